"""A Flask app on Werkzeug's own server, the upstream of tests/it/frameworks.rs.

Routes, as a Flask developer would write them:
  GET /                      -> home
  /public/ and under it      -> public
  /admin and under it        -> admin
  anything else              -> private (the app's other, protected pages)
Every answer has `X-Route: <route>` and the JSON body
{"route": ..., "path": <the path Werkzeug routed on>, "raw": <REQUEST_URI as received>}.
Prints `LISTENING <port> werkzeug <version> flask <version>` once it accepts connections.
"""

import sys
from importlib.metadata import version

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

app = Flask(__name__)


def answer(route):
    body = jsonify(
        route=route,
        path=request.path,
        raw=request.environ.get("REQUEST_URI"),
        method=request.method,
    )
    body.headers["X-Route"] = route
    return body


@app.route("/", methods=METHODS)
def home():
    # Only GET (and HEAD) of / is the home page; POST / and the like are the
    # app's protected actions.
    return answer("home" if request.method in ("GET", "HEAD") else "private")


@app.route("/public/", defaults={"rest": ""}, methods=METHODS)
@app.route("/public/<path:rest>", methods=METHODS)
def public(rest):
    return answer("public")


@app.route("/admin", defaults={"rest": ""}, methods=METHODS)
@app.route("/admin/<path:rest>", methods=METHODS)
def admin(rest):
    return answer("admin")


@app.route("/<path:rest>", methods=METHODS)
def private(rest):
    return answer("private")


def main():
    # Threaded: Portcullis keeps idle upstream connections open.
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(
        f"LISTENING {server.server_port} werkzeug {version('werkzeug')} flask {version('flask')}",
        flush=True,
    )
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
