package heroku

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	hk "github.com/heroku/heroku-go/v5"
)

// Dyno states, as the Platform API's dyno schema names them ("current
// status of process (either: crashed, down, idle, starting, or up)").
const (
	DynoCrashed  = "crashed"
	DynoDown     = "down"
	DynoIdle     = "idle"
	DynoStarting = "starting"
	DynoUp       = "up"
)

// Dyno is one running process of an app.
type Dyno struct {
	// Name is e.g. web.1.
	Name string
	// Type is the process type, e.g. web.
	Type  string
	State string
	// ReleaseVersion is the version of the release the dyno runs.
	ReleaseVersion int
	UpdatedAt      time.Time
}

// Dynos lists the app's dynos (GET /apps/{app}/dynos, heroku-go's
// DynoList): one call, one page. Heroku's default page (200) holds more
// dynos than an app herokunix deploys runs.
func (c *Client) Dynos(ctx context.Context, app string) ([]Dyno, error) {
	var list []hk.Dyno
	if err := c.do(ctx, request{op: "dyno.list", method: "GET", path: "/apps/" + url.PathEscape(app) + "/dynos"}, &list); err != nil {
		return nil, err
	}
	out := make([]Dyno, 0, len(list))
	for _, d := range list {
		out = append(out, Dyno{Name: d.Name, Type: d.Type, State: d.State, ReleaseVersion: d.Release.Version, UpdatedAt: d.UpdatedAt})
	}
	return out, nil
}

// ErrNoOutput says a release has no release-phase output to read: its
// stream answered 404. Heroku streams the output only when the release
// image contains curl, and answers 404 until the command has started.
var ErrNoOutput = errors.New("no release-phase output")

// Limits of ReleaseOutput.
const (
	// MaxOutputRead bounds how much of a stream is read; only its end is kept.
	MaxOutputRead = 4 << 20
	// outputKept is how much of the end of a stream ReleaseOutput returns.
	outputKept = 64 << 10
	// DefaultOutputTimeout bounds one read of a stream whose context has no
	// deadline: a stream stays open while its command runs.
	DefaultOutputTimeout = 10 * time.Second
)

// ReleaseOutput reads a release's output stream (its output_stream_url)
// as the Heroku CLI does (src/lib/container/streamer.ts, `releases:output`):
// a plain GET with no Authorization header (the URL is pre-signed; the API
// key must never go to it), answering 404 until the release command has
// started (ErrNoOutput). It reads until the stream ends, MaxOutputRead
// bytes, or the deadline, whichever comes first, and returns at most the
// last 64 KiB; a stream cut by the deadline returns what came. It never
// retries and is not counted against the Platform API budget (it is not a
// Platform API call).
func (c *Client) ReleaseOutput(ctx context.Context, streamURL string) (string, error) {
	u, err := url.Parse(streamURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("heroku: release output: %q is not an http(s) URL", streamURL)
	}
	status := 0
	defer func() { c.observeCall("release.output", status) }()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultOutputTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("heroku: release output: %w", err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", &Error{Kind: KindUnavailable, Message: c.redact(fmt.Sprintf("release.output: %v", err)), RetryAfter: defaultUnavailableRetry, cause: err}
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", ErrNoOutput
	case resp.StatusCode/100 != 2:
		return "", &Error{Kind: KindUnavailable, StatusCode: resp.StatusCode, Message: fmt.Sprintf("release.output: HTTP %d", resp.StatusCode),
			RetryAfter: defaultUnavailableRetry}
	}
	tail := &tailWriter{max: outputKept}
	_, err = io.Copy(tail, io.LimitReader(resp.Body, MaxOutputRead))
	if err != nil && ctx.Err() == nil {
		return "", &Error{Kind: KindUnavailable, StatusCode: resp.StatusCode, Message: c.redact(fmt.Sprintf("release.output: %v", err)),
			RetryAfter: defaultUnavailableRetry, cause: err}
	}
	// The deadline ends a stream whose command still runs: what came is kept.
	return c.redact(string(tail.buf)), nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}
