// An Express app, the upstream of tests/it/frameworks.rs.
//
// Routes, as an Express developer would write them:
//   GET /                      -> home
//   /public/ and under it      -> public   (app.use mount: Express also gives it /public)
//   /admin and under it        -> admin
//   anything else              -> private  (the app's other, protected pages)
// Every answer has `X-Route: <route>` and the JSON body
// {"route": ..., "path": <the path Express routed on>, "raw": <req.originalUrl as received>}.
// Prints `LISTENING <port> express <version>` once it accepts connections.
"use strict";

const express = require("express");
const { version } = require("express/package.json");

const app = express();

function answer(route) {
  return (req, res) => {
    res.set("X-Route", route);
    res.json({
      route,
      path: req.baseUrl + req.path,
      raw: req.originalUrl,
      method: req.method,
    });
  };
}

// Only GET (and HEAD) of / is the home page; POST / and the like are the
// app's protected actions.
app.get("/", answer("home"));
app.use("/public", answer("public"));
app.use("/admin", answer("admin"));
app.use(answer("private"));

const server = app.listen(0, "127.0.0.1", () => {
  console.log(`LISTENING ${server.address().port} express ${version}`);
});
