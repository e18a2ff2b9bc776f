package heroku

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/herokunix/herokunix/test/herokustub"
)

// TestTheKeyNeverAppearsInOutputOfAFailingRun runs every failure the client
// knows, logs every error and value the way a controller would, and scans
// all of it for the key (plain and base64, as in a Basic header).
func TestTheKeyNeverAppearsInOutputOfAFailingRun(t *testing.T) {
	var out bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, func(so *herokustub.Options, _ *Options) {
		so.Logger = log.New(&out, "registry: ", 0)
	})
	e.stub.CreateApp("shop", "container")
	e.stub.CreateApp("old", "heroku-22")
	ctx := context.Background()
	var errs []error
	keep := func(err error) {
		if err == nil {
			t.Errorf("failing call %d succeeded", len(errs))
			return
		}
		errs = append(errs, err)
	}

	_, err := e.client.App(ctx, "nope")
	keep(err)
	_, err = e.client.App(ctx, "old")
	keep(err)
	for _, f := range []herokustub.Fault{{Status: 401}, {Status: 403}, {Status: 422}, {Status: 500}, {Status: 503}, {Drop: true}, {Status: 429}} {
		f.Count = 1
		if f.Drop {
			f.Count = 2 // net/http retries a GET once on a reused connection
		}
		e.stub.Faults().Add(f)
		_, err = e.client.CurrentRelease(ctx, "shop")
		keep(err)
	}
	e.clock.Advance(2 * defaultRateLimitRetry)
	_, _, err = e.client.ReleaseImages(ctx, "shop", map[string]string{"web": "sha256:" + strings.Repeat("b", 64)})
	keep(err)
	keep(e.client.ScaleFormation(ctx, "shop", []Formation{{Type: "nope", Quantity: 1}}))

	// A registry push refused for its platform.
	ref, _ := name.NewTag(e.regHost+"/shop/web:latest", name.Insecure)
	keep(remote.Write(ref, dockerImage(t, "arm64"), remote.WithAuth(e.client.RegistryAuth())))
	// A push with a wrong key.
	bad, _ := New(Options{APIKey: testKey + "-wrong", BaseURL: e.api.URL, RegistryHost: e.regHost})
	keep(remote.Write(ref, dockerImage(t, "amd64"), remote.WithAuth(bad.RegistryAuth())))

	// A server that echoes the Authorization header into its error message.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"id":"bad_request","message":"bad header %s"}`, r.Header.Get("Authorization"))
	}))
	defer echo.Close()
	ec, _ := New(Options{APIKey: testKey, BaseURL: echo.URL})
	_, err = ec.App(ctx, "shop")
	keep(err)
	// Nothing listening.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	cc, _ := New(Options{APIKey: testKey, BaseURL: closed.URL})
	_, err = cc.App(ctx, "shop")
	keep(err)

	for _, err := range errs {
		logger.Error("heroku call failed", "err", err, "detail", fmt.Sprintf("%v|%+v|%#v|%s|%q", err, err, err, err, err))
	}
	opts := Options{APIKey: testKey, BaseURL: e.api.URL}
	for _, v := range []any{opts, &opts, e.client, e.client.RegistryAuth()} {
		logger.Info("value", "v", v, "fmt", fmt.Sprintf("%v|%+v|%#v|%s", v, v, v, v))
	}
	for _, c := range e.stub.Calls() {
		logger.Debug("stand-in call", "call", fmt.Sprintf("%+v", c))
	}

	if out.Len() == 0 || len(errs) != 15 {
		t.Fatalf("captured %d bytes, %d errors", out.Len(), len(errs))
	}
	for _, secret := range []string{testKey, base64.StdEncoding.EncodeToString([]byte("_:" + testKey)), base64.StdEncoding.EncodeToString([]byte(":" + testKey))} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("the key appears in the output:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), "<redacted>") {
		t.Error("the echoed key was not redacted")
	}
}
