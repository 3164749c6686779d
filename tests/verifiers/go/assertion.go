// Verifying Portcullis's X-User-Assertion in Go with the standard library
// alone (Go 1.19 or later): the ES256 signature against the keys of
// /oauth2/jwks.json, then iss, aud and exp. Copy this file into your app
// (and change the package name). tests/it/assertion.rs runs it, through
// main.go, against a real Portcullis.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The reasons a token is refused.
var (
	ErrMalformed  = errors.New("assertion: malformed token")
	ErrAlgorithm  = errors.New("assertion: not an ES256 token")
	ErrUnknownKey = errors.New("assertion: signed with a key that is not published")
	ErrSignature  = errors.New("assertion: bad signature")
	ErrExpired    = errors.New("assertion: expired")
	ErrIssuer     = errors.New("assertion: wrong issuer")
	ErrAudience   = errors.New("assertion: not for this audience")
)

// Assertions verifies the tokens of one Portcullis. The keys are fetched
// from JWKSURL and kept 5 minutes (the JWK Set's max-age); a token with an
// unknown kid fetches them again, at most once every 30 seconds.
type Assertions struct {
	JWKSURL  string           // e.g. "http://127.0.0.1:4180/oauth2/jwks.json"
	Issuer   string           // Portcullis's server.public_url
	Audience string           // [assertion] audience (default: the same)
	Now      func() time.Time // nil: time.Now

	mu      sync.Mutex
	keys    map[string]*ecdsa.PublicKey
	fetched time.Time
}

// Verify returns the token's claims ("sub" is the X-User value), or why it
// is refused.
func (a *Assertions) Verify(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, ErrMalformed
	}
	var header struct{ Alg, Kid string }
	if decode(parts[0], &header) != nil {
		return nil, ErrMalformed
	}
	if header.Alg != "ES256" {
		return nil, ErrAlgorithm
	}
	key, err := a.key(header.Kid)
	if err != nil {
		return nil, err
	}
	signature, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(signature) != 64 {
		return nil, ErrSignature
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r := new(big.Int).SetBytes(signature[:32])
	s := new(big.Int).SetBytes(signature[32:])
	if !ecdsa.Verify(key, digest[:], r, s) {
		return nil, ErrSignature
	}
	var claims map[string]any
	if decode(parts[1], &claims) != nil {
		return nil, ErrMalformed
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	if exp, ok := claims["exp"].(float64); !ok || float64(now().Unix()) >= exp {
		return nil, ErrExpired
	}
	if claims["iss"] != a.Issuer {
		return nil, ErrIssuer
	}
	if !forAudience(claims["aud"], a.Audience) {
		return nil, ErrAudience
	}
	if _, ok := claims["sub"].(string); !ok {
		return nil, ErrMalformed
	}
	return claims, nil
}

func decode(segment string, into any) error {
	raw, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, into)
}

func forAudience(aud any, want string) bool {
	switch aud := aud.(type) {
	case string:
		return aud == want
	case []any:
		for _, a := range aud {
			if a == want {
				return true
			}
		}
	}
	return false
}

func (a *Assertions) key(kid string) (*ecdsa.PublicKey, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	age := time.Since(a.fetched)
	if _, known := a.keys[kid]; a.keys == nil || age > 5*time.Minute || (!known && age > 30*time.Second) {
		keys, err := fetchKeys(a.JWKSURL)
		if err != nil {
			if a.keys == nil {
				return nil, err
			}
		} else {
			a.keys, a.fetched = keys, time.Now()
		}
	}
	if key, ok := a.keys[kid]; ok {
		return key, nil
	}
	return nil, ErrUnknownKey
}

var jwksClient = &http.Client{Timeout: 10 * time.Second}

func fetchKeys(url string) (map[string]*ecdsa.PublicKey, error) {
	response, err := jwksClient.Get(url)
	if err != nil {
		return nil, fmt.Errorf("assertion: fetching the keys: %w", err)
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("assertion: fetching the keys: %s", response.Status)
	}
	var set struct {
		Keys []struct{ Kty, Crv, Kid, X, Y string }
	}
	if err := json.NewDecoder(response.Body).Decode(&set); err != nil {
		return nil, fmt.Errorf("assertion: reading the keys: %w", err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range set.Keys {
		x, errX := base64.RawURLEncoding.DecodeString(k.X)
		y, errY := base64.RawURLEncoding.DecodeString(k.Y)
		if k.Kty != "EC" || k.Crv != "P-256" || errX != nil || errY != nil {
			continue
		}
		key := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if key.Curve.IsOnCurve(key.X, key.Y) {
			keys[k.Kid] = key
		}
	}
	return keys, nil
}
