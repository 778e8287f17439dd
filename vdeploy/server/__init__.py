"""The OpenAI-compatible HTTP server (docs/serving.md).

Public API:
    create_app(engine, ServerSettings(...)) -> FastAPI        vdeploy.server.app
    ServerThread(app, host, port).start() / serve_foreground   vdeploy.server.runner
    ReasoningParser("deepseek_r1" | "none")                    vdeploy.server.reasoning
    resolve_deployment(ServeOptions(...)) -> Deployment         vdeploy.server.deployment (what to serve, and whether it fits)
    run_serve(ServeOptions(...), console)                      vdeploy.server.launch (the `vdeploy serve` body)

Submodules import FastAPI and the engine; this package file imports nothing, so `import vdeploy.server` is cheap.
"""
