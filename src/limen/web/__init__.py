"""The browser UI: pages, scripts and styles served by limen itself (no CDN, no bundler).

``install_web(app, settings)`` adds the pages, the screenshot endpoint and the static files to an app.
"""

from limen.web.routes import install_web, router

__all__ = ["install_web", "router"]
