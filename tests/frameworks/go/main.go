// A net/http app on Go's standard ServeMux, the upstream of
// tests/it/frameworks.rs. Standard library only: built with GO111MODULE=off,
// no go.mod, no network.
//
// Routes, as a Go developer would write them:
//
//	GET /                  -> home
//	/public/ and under it  -> public
//	/admin and under it    -> admin
//	anything else          -> private (the app's other, protected pages)
//
// Every answer has `X-Route: <route>` and the JSON body
// {"route": ..., "path": <r.URL.Path, what ServeMux routed on>, "raw": <r.RequestURI>}.
// Prints `LISTENING <port> go <version>` once it accepts connections.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
)

func answer(route string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Route", route)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"route":  route,
			"path":   r.URL.Path,
			"raw":    r.RequestURI,
			"method": r.Method,
		})
	}
}

func main() {
	mux := http.NewServeMux()
	home, private := answer("home"), answer("private")
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// "/" is ServeMux's catch-all; only GET (and HEAD) of / itself is the
		// home page.
		if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			home(w, r)
			return
		}
		private(w, r)
	})
	mux.HandleFunc("/public/", answer("public"))
	mux.HandleFunc("/admin", answer("admin"))
	mux.HandleFunc("/admin/", answer("admin"))

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("LISTENING %d go %s\n", listener.Addr().(*net.TCPAddr).Port, runtime.Version())
	if err := http.Serve(listener, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
