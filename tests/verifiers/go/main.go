// The test driver of assertion.go (tests/it/assertion.rs runs it):
//
//	go run main.go assertion.go JWKS_URL ISSUER AUDIENCE < cases
//
// Each input line is "SECONDS TOKEN": verify TOKEN as if the clock were
// SECONDS ahead (0: now). Each output line is JSON: {"ok": true, "claims":
// {...}} or {"ok": false, "error": "<the Err* variable's name>"}.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	shift := time.Duration(0)
	verifier := &Assertions{
		JWKSURL:  os.Args[1],
		Issuer:   os.Args[2],
		Audience: os.Args[3],
		Now:      func() time.Time { return time.Now().Add(shift) },
	}
	names := map[error]string{
		ErrMalformed: "ErrMalformed", ErrAlgorithm: "ErrAlgorithm", ErrUnknownKey: "ErrUnknownKey",
		ErrSignature: "ErrSignature", ErrExpired: "ErrExpired", ErrIssuer: "ErrIssuer",
		ErrAudience: "ErrAudience",
	}
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 64*1024), 1024*1024)
	out := json.NewEncoder(os.Stdout)
	for lines.Scan() {
		seconds, token, found := strings.Cut(strings.TrimSpace(lines.Text()), " ")
		if !found {
			continue
		}
		n, _ := strconv.Atoi(seconds)
		shift = time.Duration(n) * time.Second
		claims, err := verifier.Verify(token)
		if err != nil {
			name := err.Error()
			for known, n := range names {
				if errors.Is(err, known) {
					name = n
				}
			}
			out.Encode(map[string]any{"ok": false, "error": name})
			continue
		}
		out.Encode(map[string]any{"ok": true, "claims": claims})
	}
}
