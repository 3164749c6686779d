// The servlet behind every route of the Tomcat upstream of tests/it/frameworks.rs;
// webapp/WEB-INF/web.xml declares it once per route (init-param "route") and maps it.
// Answers `X-Route: <route>` and the JSON body {"route": ..., "path": <servlet path +
// path info, what Tomcat mapped on>, "raw": <getRequestURI(), the target as received,
// path parameters included>}.

import java.io.IOException;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;

public class RouteServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;

    // Every method, so that the servlet, not HttpServlet's 405, answers.
    @Override
    protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String route = getInitParameter("route");
        String method = req.getMethod();
        // Only GET (and HEAD) of / is the home page; POST / and the like are the app's
        // protected actions.
        if ("home".equals(route) && !"GET".equals(method) && !"HEAD".equals(method)) {
            route = "private";
        }
        String path = req.getServletPath() + (req.getPathInfo() == null ? "" : req.getPathInfo());
        resp.setHeader("X-Route", route);
        resp.setContentType("application/json");
        resp.setCharacterEncoding("UTF-8");
        resp.getWriter().write("{\"route\":" + json(route) + ",\"path\":" + json(path)
                + ",\"raw\":" + json(req.getRequestURI()) + ",\"method\":" + json(method) + "}");
    }

    private static String json(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20 || c == 0x7f) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.append('"').toString();
    }
}
