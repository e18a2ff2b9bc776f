package heroku

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzParseError(f *testing.F) {
	f.Add(404, `{"id":"not_found","message":"Couldn't find that app."}`, "", "abc", "4499")
	f.Add(429, `{"id":"rate_limit","message":"Your account reached the API rate limit"}`, "60", "", "0")
	f.Add(503, `<html>down</html>`, "Wed, 21 Oct 2015 07:28:00 GMT", "x,y", "")
	f.Add(422, `{"id":"invalid_params","message":"\u0000\xff"}`, "-5", "", "-1")
	f.Add(200, `null`, "99999999999999999999", "", "1e3")
	f.Add(418, `{"id":["x"]}`, "  7 ", "", " 12 ")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, body, retryAfter, requestID, remaining string) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		h.Set("Request-Id", requestID)
		h.Set("RateLimit-Remaining", remaining)
		e := parseError(status, h, []byte(body), now)
		if e == nil || e.StatusCode != status {
			t.Fatalf("parseError = %#v", e)
		}
		msg := e.Error()
		if !strings.HasPrefix(msg, "heroku: ") || !utf8.ValidString(e.Message) || len(e.Message) > maxErrorMessage+len("…") {
			t.Fatalf("message %q", msg)
		}
		if strings.ContainsAny(e.Message+e.ID+e.RequestID, "\n\r\x00") {
			t.Fatalf("control characters in %q", msg)
		}
		if status == http.StatusTooManyRequests && e.Kind != KindRateLimited {
			t.Fatalf("429 is %v", e.Kind)
		}
		d, ok := RetryAfter(e)
		if ok != (e.Kind == KindRateLimited || e.Kind == KindUnavailable) {
			t.Fatalf("RetryAfter ok = %v for %v", ok, e.Kind)
		}
		if ok && (d <= 0 || d > maxRetryAfter) {
			t.Fatalf("RetryAfter = %v", d)
		}
		if s := e.Kind.sentinel(); s != nil && !errors.Is(e, s) {
			t.Fatalf("errors.Is(%v, %v) = false", e, s)
		}
		if n, ok := parseRemaining(h); ok && n < 0 {
			t.Fatalf("remaining %d", n)
		}
	})
}
