package receiver

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of the generic form.
const (
	HeaderGenericSignature = "X-Herokunix-Signature"
	HeaderGenericTimestamp = "X-Herokunix-Timestamp"
)

// GenericWindow is how far a generic event's timestamp may be from the
// receiver's clock.
const GenericWindow = 5 * time.Minute

// errUnauthenticated is a request whose signature or token does not verify.
var errUnauthenticated = errors.New("signature does not verify")

// eventKind is what a verified request carries.
type eventKind int

const (
	kindPush eventKind = iota
	kindPing
	kindOther
)

// provider is one sender's conventions: how it signs, how it names its
// deliveries and events, and how its push payload reads.
type provider struct {
	// name is the path segment (/hooks/NAME) and the key of its secret in
	// the receiver's Secret.
	name string
	// verify checks the request's authenticity and returns its delivery
	// id, the key replay protection remembers.
	verify func(h http.Header, body, secret []byte, now time.Time) (delivery string, err error)
	kind   func(h http.Header) (eventKind, string)
	parse  func(body []byte) (Push, error)
}

var providers = map[string]provider{
	"github": {
		name: "github",
		// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
		verify: func(h http.Header, body, secret []byte, _ time.Time) (string, error) {
			if !validHMAC(secret, body, h.Get("X-Hub-Signature-256")) {
				return "", errUnauthenticated
			}
			id := h.Get("X-GitHub-Delivery")
			if id == "" {
				return "", fmt.Errorf("%w: no X-GitHub-Delivery", errUnauthenticated)
			}
			return id, nil
		},
		kind: func(h http.Header) (eventKind, string) {
			switch e := h.Get("X-GitHub-Event"); e {
			case "push":
				return kindPush, e
			case "ping":
				return kindPing, e
			default:
				return kindOther, e
			}
		},
		parse: ParseGitHubPush,
	},
	"gitlab": {
		name: "gitlab",
		// GitLab sends the configured secret token as is; it authenticates
		// the sender but, unlike an HMAC, not the body.
		// https://docs.gitlab.com/user/project/integrations/webhooks/#create-a-webhook
		verify: func(h http.Header, body, secret []byte, _ time.Time) (string, error) {
			if subtle.ConstantTimeCompare([]byte(h.Get("X-Gitlab-Token")), secret) != 1 {
				return "", errUnauthenticated
			}
			for _, k := range []string{"X-Gitlab-Event-UUID", "Idempotency-Key"} {
				if id := h.Get(k); id != "" {
					return id, nil
				}
			}
			// Older GitLab sends no delivery id: the body (which names the
			// pushed commit) identifies the delivery.
			sum := sha256.Sum256(body)
			return hex.EncodeToString(sum[:]), nil
		},
		kind: func(h http.Header) (eventKind, string) {
			if e := h.Get("X-Gitlab-Event"); e == "Push Hook" {
				return kindPush, e
			} else {
				return kindOther, e
			}
		},
		parse: ParseGitLabPush,
	},
	"generic": {
		name: "generic",
		// HMAC-SHA256 over "TIMESTAMP.BODY": the timestamp bounds how long
		// a captured request stays valid, and the signature is its id.
		verify: func(h http.Header, body, secret []byte, now time.Time) (string, error) {
			ts := h.Get(HeaderGenericTimestamp)
			sec, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				return "", fmt.Errorf("%w: %s is not a Unix time", errUnauthenticated, HeaderGenericTimestamp)
			}
			if d := now.Sub(time.Unix(sec, 0)); d > GenericWindow || d < -GenericWindow {
				return "", fmt.Errorf("%w: timestamp is %s from now", errUnauthenticated, d.Round(time.Second))
			}
			sig := h.Get(HeaderGenericSignature)
			if !validHMAC(secret, append([]byte(ts+"."), body...), sig) {
				return "", errUnauthenticated
			}
			return sig, nil
		},
		kind:  func(http.Header) (eventKind, string) { return kindPush, "push" },
		parse: ParseGenericPush,
	},
}

// SignGeneric is the generic form's signature header value for body at
// time ts (for senders written in Go, and for tests).
func SignGeneric(secret, body []byte, ts time.Time) (timestamp, signature string) {
	timestamp = strconv.FormatInt(ts.Unix(), 10)
	return timestamp, Sign(secret, append([]byte(timestamp+"."), body...))
}

// Sign is "sha256=" and the hex HMAC-SHA256 of body, as GitHub's
// X-Hub-Signature-256.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// validHMAC compares a "sha256=HEX" header with the body's HMAC in
// constant time.
func validHMAC(secret, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(secret) == 0 {
		return false
	}
	gotMAC, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(gotMAC, m.Sum(nil))
}
