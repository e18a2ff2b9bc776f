package heroku

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrorKind says what a caller should do about a failed Heroku call.
type ErrorKind int

// The kinds of Heroku errors. KindOther covers every answer that has no
// kind of its own (400, 406, 409, 416, …).
const (
	KindOther ErrorKind = iota
	KindNotFound
	KindUnauthorized
	KindForbidden
	KindRateLimited
	KindUnavailable
	KindInvalidParams
)

func (k ErrorKind) String() string {
	switch k {
	case KindNotFound:
		return "NotFound"
	case KindUnauthorized:
		return "Unauthorized"
	case KindForbidden:
		return "Forbidden"
	case KindRateLimited:
		return "RateLimited"
	case KindUnavailable:
		return "Unavailable"
	case KindInvalidParams:
		return "InvalidParams"
	default:
		return "Other"
	}
}

// Sentinels for errors.Is; every *Error matches the one of its Kind.
var (
	ErrNotFound      = errors.New("heroku: not found")
	ErrUnauthorized  = errors.New("heroku: unauthorized")
	ErrForbidden     = errors.New("heroku: forbidden")
	ErrRateLimited   = errors.New("heroku: rate limited")
	ErrUnavailable   = errors.New("heroku: unavailable")
	ErrInvalidParams = errors.New("heroku: invalid params")
)

func (k ErrorKind) sentinel() error {
	switch k {
	case KindNotFound:
		return ErrNotFound
	case KindUnauthorized:
		return ErrUnauthorized
	case KindForbidden:
		return ErrForbidden
	case KindRateLimited:
		return ErrRateLimited
	case KindUnavailable:
		return ErrUnavailable
	case KindInvalidParams:
		return ErrInvalidParams
	}
	return nil
}

// Default back-offs when Heroku does not send Retry-After. The bucket
// refills at about 75 tokens a minute, so a minute always buys some room.
const (
	defaultRateLimitRetry   = time.Minute
	defaultUnavailableRetry = 15 * time.Second
)

// Error is a failed Heroku call: an error answer from the Platform API
// ({"id","message"} body), a transport failure (StatusCode 0, Kind
// KindUnavailable), or a call refused by the client-side limiter
// (StatusCode 0, Kind KindRateLimited). It never holds the API key.
type Error struct {
	Kind       ErrorKind
	StatusCode int
	ID         string // Heroku's error id, e.g. "not_found", "rate_limit"
	Message    string
	// Resource is what a not_found answer says is missing ("app",
	// "release", "formation", …): a missing process type is not a missing
	// app.
	Resource string
	// URL is the documentation Heroku points to (a 429 carries one).
	URL       string
	RequestID string
	// RetryAfter is how long to wait before trying again; set for
	// KindRateLimited and KindUnavailable.
	RetryAfter time.Duration

	cause error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("heroku: ")
	switch {
	case e.ID != "":
		b.WriteString(e.ID)
	default:
		b.WriteString(e.Kind.String())
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if e.Resource != "" {
		fmt.Fprintf(&b, " [%s]", e.Resource)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, "; retry after %s", e.RetryAfter)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " [request-id %s]", e.RequestID)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) and friends work.
func (e *Error) Is(target error) bool {
	s := e.Kind.sentinel()
	return s != nil && s == target
}

// Unwrap returns the transport error behind a KindUnavailable error, if any.
func (e *Error) Unwrap() error { return e.cause }

// RetryAfter reports how long to wait before retrying err, for rate-limited
// and unavailable errors.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if !errors.As(err, &e) {
		return 0, false
	}
	if e.Kind != KindRateLimited && e.Kind != KindUnavailable {
		return 0, false
	}
	return e.RetryAfter, true
}

// StackError says the app is not on the container stack.
type StackError struct {
	App        string
	Stack      string
	BuildStack string
}

func (e *StackError) Error() string {
	return fmt.Sprintf("heroku app %q is on stack %q (build stack %q), not \"container\": run `heroku stack:set container -a %s` and reconcile again",
		e.App, e.Stack, e.BuildStack, e.App)
}

// IsNotFound says whether err is Heroku's not_found for the given resource
// ("app", "release", "formation", …), so that a missing process type is not
// taken for a missing app.
func IsNotFound(err error, resource string) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindNotFound && e.Resource == resource
}

// ErrUnsupportedGeneration matches a *GenerationError.
var ErrUnsupportedGeneration = errors.New("heroku: the app's generation takes no container images")

// GenerationError says the app is of a generation that cannot take
// container images: Fir ("Docker and monorepo apps are unsupported on
// Fir"; its stack is always cnb, so `heroku stack:set container` cannot
// help). App returns it before any registry or formation call is made.
type GenerationError struct {
	App        string
	Generation string
}

func (e *GenerationError) Error() string {
	return fmt.Sprintf("heroku app %q is a %s-generation app, which cannot run container images; use a Cedar app on the container stack",
		e.App, e.Generation)
}

// Is makes errors.Is(err, ErrUnsupportedGeneration) work.
func (e *GenerationError) Is(target error) bool { return target == ErrUnsupportedGeneration }

// maxErrorMessage bounds what an error answer can put into an error string.
const maxErrorMessage = 512

// parseError turns a non-2xx answer into an *Error. It never fails: a body
// that is not Heroku's {"id","message"} still gives a typed error.
func parseError(status int, h http.Header, body []byte, now time.Time) *Error {
	e := &Error{StatusCode: status, RequestID: sanitize(h.Get("Request-Id"), 128)}
	var b struct {
		ID      string `json:"id"`
		Message string `json:"message"`
		// Error holds the text of missing_version answers instead of
		// Message (heroku.md "Platform API in general").
		Error    string `json:"error"`
		Resource string `json:"resource"`
		URL      string `json:"url"`
	}
	if json.Unmarshal(body, &b) == nil {
		e.ID = sanitize(b.ID, 64)
		e.Message = sanitize(b.Message, maxErrorMessage)
		if e.Message == "" {
			e.Message = sanitize(b.Error, maxErrorMessage)
		}
		e.Resource = sanitize(b.Resource, 64)
		e.URL = sanitize(b.URL, 256)
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	switch {
	case status == http.StatusTooManyRequests || e.ID == "rate_limit":
		e.Kind = KindRateLimited
	case status == http.StatusUnauthorized:
		e.Kind = KindUnauthorized
	case status == http.StatusForbidden:
		e.Kind = KindForbidden
	case status == http.StatusNotFound:
		e.Kind = KindNotFound
	case status == http.StatusUnprocessableEntity || e.ID == "invalid_params":
		e.Kind = KindInvalidParams
	case status >= 500:
		e.Kind = KindUnavailable
	default:
		e.Kind = KindOther
	}
	switch e.Kind {
	case KindRateLimited:
		e.RetryAfter = parseRetryAfter(h.Get("Retry-After"), now, defaultRateLimitRetry)
	case KindUnavailable:
		e.RetryAfter = parseRetryAfter(h.Get("Retry-After"), now, defaultUnavailableRetry)
	}
	return e
}

// maxRetryAfter caps a server-sent Retry-After so a bad header cannot park
// an app for days.
const maxRetryAfter = time.Hour

// parseRetryAfter reads a Retry-After header (delay-seconds or HTTP-date).
func parseRetryAfter(v string, now time.Time, def time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return def
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return def
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return def
	}
	if d <= 0 {
		return time.Second
	}
	return min(d, maxRetryAfter)
}

// parseRemaining reads RateLimit-Remaining.
func parseRemaining(h http.Header) (int, bool) {
	v := strings.TrimSpace(h.Get("RateLimit-Remaining"))
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// sanitize keeps server text printable and short.
func sanitize(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
