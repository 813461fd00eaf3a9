"""The browser UI: pages, scripts and styles served by limen itself (no CDN, no bundler).

``limen.web.routes.install_web(app, settings)`` adds the pages, the screenshot endpoint and the static files
to an app. This package file imports nothing, so that :mod:`limen.api.services` can name the screenshot
cache without loading the pages' routes (which use :mod:`limen.api.deps`).
"""
