package heroku

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herokunix/herokunix/test/herokustub"
)

func bare(so *herokustub.Options, _ *Options) { so.BareApps = true }

func TestNewRequiresAKeyAndAnHTTPBaseURL(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a key succeeded")
	}
	if _, err := New(Options{APIKey: testKey, BaseURL: "ftp://x"}); err == nil {
		t.Error("New with an ftp base URL succeeded")
	}
	c, err := New(Options{APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	if c.RegistryHost() != DefaultRegistryHost || c.svc.URL != DefaultBaseURL {
		t.Errorf("defaults: registry %q, base %q", c.RegistryHost(), c.svc.URL)
	}
	if c.http.Timeout == 0 {
		t.Error("default HTTP client has no timeout")
	}
}

func TestAppOnTheContainerStackIsReturned(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	a, err := e.client.App(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "shop" || a.Stack != "container" || !strings.HasPrefix(a.WebURL, "https://shop-") {
		t.Errorf("app = %+v", a)
	}
}

func TestAppOnlyOnTheContainerBuildStackIsAccepted(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "heroku-24")
	e.stub.SetBuildStack("shop", "container")
	if _, err := e.client.App(context.Background(), "shop"); err != nil {
		t.Fatalf("app after stack:set container: %v", err)
	}
}

func TestAppOnAnotherStackIsAStackErrorSayingHowToSwitch(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "heroku-24")
	_, err := e.client.App(context.Background(), "shop")
	var se *StackError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *StackError", err)
	}
	if se.Stack != "heroku-24" || !strings.Contains(err.Error(), "heroku stack:set container -a shop") {
		t.Errorf("err = %v", err)
	}
}

func TestUnknownAppIsNotFoundWithRequestID(t *testing.T) {
	e := newEnv(t)
	_, err := e.client.App(context.Background(), "nope")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	var he *Error
	errors.As(err, &he)
	if he.StatusCode != 404 || he.ID != "not_found" || he.RequestID == "" || he.Kind != KindNotFound {
		t.Errorf("error = %#v", he)
	}
	if _, ok := RetryAfter(err); ok {
		t.Error("RetryAfter on not found")
	}
}

func TestCurrentReleaseIsTheLatestVersion(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	r, err := e.client.CurrentRelease(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	if r == nil || r.Version != 2 || !r.Current || r.Status != ReleaseSucceeded || r.ID == "" || r.CreatedAt.IsZero() {
		t.Errorf("release = %+v", r)
	}
	calls := e.apiCalls()
	if len(calls) != 1 || calls[0].Range != "version ..; max=1, order=desc" {
		t.Errorf("calls = %+v", calls)
	}
}

func TestCurrentReleaseOfAnAppWithoutReleasesIsNil(t *testing.T) {
	e := newEnv(t, bare)
	e.stub.CreateApp("shop", "container")
	r, err := e.client.CurrentRelease(context.Background(), "shop")
	if err != nil || r != nil {
		t.Errorf("release = %+v, err = %v", r, err)
	}
}

func TestReleaseImagesReleasesAllProcessTypesInOneRelease(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	web, worker := e.push(t, "shop/web"), e.push(t, "shop/worker")
	e.stub.ResetCalls()

	rel, outcome, err := e.client.ReleaseImages(context.Background(), "shop", map[string]string{"web": web, "worker": worker})
	if err != nil {
		t.Fatal(err)
	}
	if outcome != Released || rel.Version != 3 || rel.Status != ReleaseSucceeded || !rel.Current {
		t.Errorf("outcome = %v, release = %+v", outcome, rel)
	}
	rels := e.stub.Releases("shop")
	last := rels[len(rels)-1]
	if last.Images["web"] != web || last.Images["worker"] != worker {
		t.Errorf("stand-in release images = %v", last.Images)
	}
	got, err := e.client.Release(context.Background(), "shop", rel.ID)
	if err != nil || got.ID != rel.ID || got.Version != 3 {
		t.Errorf("Release = %+v, %v", got, err)
	}
	f, err := e.client.Formation(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	want := []Formation{{Type: "web", Quantity: 1, Size: "standard-1X"}, {Type: "worker", Quantity: 0, Size: "standard-1X"}}
	if len(f) != 2 || f[0] != want[0] || f[1] != want[1] {
		t.Errorf("formation = %+v", f)
	}
	var writes int
	for _, c := range e.apiCalls() {
		if c.IsWrite() {
			writes++
		}
	}
	if writes != 1 {
		t.Errorf("writes = %d, want one PATCH", writes)
	}
}

func TestReleaseImagesOfAnImageNeverPushedIsInvalidParams(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	web := e.push(t, "shop/web")
	// Pushed to web, released as worker: Heroku looks in shop/worker.
	_, _, err := e.client.ReleaseImages(context.Background(), "shop", map[string]string{"worker": web})
	if !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("err = %v, want ErrInvalidParams", err)
	}
	if n := len(e.stub.Releases("shop")); n != 2 {
		t.Errorf("releases = %d, want no new one", n)
	}
}

func TestReleaseImagesRefusesMalformedInputWithoutCalling(t *testing.T) {
	e := newEnv(t)
	for _, images := range []map[string]string{
		nil,
		{"web": "sha256:abc"},
		{"we b": "sha256:" + strings.Repeat("a", 64)},
	} {
		if _, _, err := e.client.ReleaseImages(context.Background(), "shop", images); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%v: err = %v", images, err)
		}
	}
	if n := len(e.stub.Calls()); n != 0 {
		t.Errorf("calls = %d", n)
	}
}

func TestReleaseImagesReportsNothingReleasedWhenTheLatestReleaseIsUnchanged(t *testing.T) {
	// A Heroku that accepts the PATCH but makes no release.
	const rel = `[{"id":"11111111-1111-4111-8111-111111111111","version":7,"status":"succeeded","current":true}]`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("RateLimit-Remaining", "4000")
		if r.Method == http.MethodPatch {
			_, _ = w.Write([]byte(`[]`))
			return
		}
		_, _ = w.Write([]byte(rel))
	}))
	defer srv.Close()
	c, err := New(Options{APIKey: testKey, BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	r, outcome, err := c.ReleaseImages(context.Background(), "shop", map[string]string{"web": "sha256:" + strings.Repeat("a", 64)})
	if err != nil || outcome != NotReleased || r.Version != 7 {
		t.Errorf("release = %+v, outcome = %v, err = %v", r, outcome, err)
	}
	if n, ok := c.RateLimitRemaining(); !ok || n != 4000 {
		t.Errorf("remaining = %d, %v", n, ok)
	}
}

func TestReleasePhaseKeepsTheReleasePendingUntilItSucceeds(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	images := map[string]string{"web": e.push(t, "shop/web"), "release": e.push(t, "shop/release")}
	rel, outcome, err := e.client.ReleaseImages(context.Background(), "shop", images)
	if err != nil {
		t.Fatal(err)
	}
	if outcome != Released || rel.Status != ReleasePending || rel.Current || rel.OutputStreamURL == "" {
		t.Fatalf("release = %+v", rel)
	}
	if err := e.stub.CompletePendingRelease("shop", true); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.Release(context.Background(), "shop", rel.ID)
	if err != nil || got.Status != ReleaseSucceeded || !got.Current {
		t.Errorf("release = %+v, %v", got, err)
	}
	f, _ := e.client.Formation(context.Background(), "shop")
	if len(f) != 1 || f[0].Type != "web" {
		t.Errorf("formation = %+v; release is not a dyno formation", f)
	}
	// The output stream is served without the key.
	resp, err := http.Get(rel.OutputStreamURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("output stream: %s", resp.Status)
	}
}

func TestAFailedReleasePhaseLeavesThePreviousReleaseCurrent(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	before, _ := e.client.CurrentRelease(context.Background(), "shop")
	images := map[string]string{"web": e.push(t, "shop/web"), "release": e.push(t, "shop/release")}
	rel, _, err := e.client.ReleaseImages(context.Background(), "shop", images)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.stub.CompletePendingRelease("shop", false); err != nil {
		t.Fatal(err)
	}
	got, _ := e.client.Release(context.Background(), "shop", rel.ID)
	if got.Status != ReleaseFailed || got.Current {
		t.Errorf("failed release = %+v", got)
	}
	prev, _ := e.client.Release(context.Background(), "shop", before.ID)
	if !prev.Current {
		t.Errorf("previous release = %+v, want current", prev)
	}
}

func TestScaleFormationSetsQuantityAndSizeAndKeepsSizeWhenEmpty(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	e.stub.SetFormation("shop", herokustub.Formation{Type: "web", Quantity: 1, Size: "standard-1X"})
	e.stub.SetFormation("shop", herokustub.Formation{Type: "worker", Quantity: 0, Size: "performance-m"})
	err := e.client.ScaleFormation(context.Background(), "shop", []Formation{
		{Type: "web", Quantity: 2, Size: "standard-2X"}, {Type: "worker", Quantity: 3}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := e.client.Formation(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	want := []Formation{{"web", 2, "standard-2X"}, {"worker", 3, "performance-m"}}
	if len(f) != 2 || f[0] != want[0] || f[1] != want[1] {
		t.Errorf("formation = %+v, want %+v", f, want)
	}
	if err := e.client.ScaleFormation(context.Background(), "shop", []Formation{{Type: "clock", Quantity: 1}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown type: %v", err)
	}
	if err := e.client.ScaleFormation(context.Background(), "shop", []Formation{{Type: "web", Quantity: 1, Size: "huge"}}); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("bad size: %v", err)
	}
	if err := e.client.ScaleFormation(context.Background(), "shop", nil); err != nil {
		t.Errorf("empty update: %v", err)
	}
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		name      string
		fault     herokustub.Fault
		key       string
		want      error
		kind      ErrorKind
		retry     time.Duration
		wantRetry bool
	}{
		{name: "a wrong key is unauthorized", key: "wrong", want: ErrUnauthorized, kind: KindUnauthorized},
		{name: "403 is forbidden", fault: herokustub.Fault{Status: 403, Count: 1}, want: ErrForbidden, kind: KindForbidden},
		{name: "404 is not found", fault: herokustub.Fault{Status: 404, Count: 1}, want: ErrNotFound, kind: KindNotFound},
		{name: "422 is invalid params", fault: herokustub.Fault{Status: 422, Count: 1}, want: ErrInvalidParams, kind: KindInvalidParams},
		{name: "429 is rate limited for a minute", fault: herokustub.Fault{Status: 429, Count: 1}, want: ErrRateLimited, kind: KindRateLimited, retry: time.Minute, wantRetry: true},
		{name: "429 honours Retry-After", fault: herokustub.Fault{Status: 429, Count: 1, RetryAfter: "7"}, want: ErrRateLimited, kind: KindRateLimited, retry: 7 * time.Second, wantRetry: true},
		{name: "500 is unavailable", fault: herokustub.Fault{Status: 500, Count: 1}, want: ErrUnavailable, kind: KindUnavailable, retry: defaultUnavailableRetry, wantRetry: true},
		{name: "503 is unavailable", fault: herokustub.Fault{Status: 503, Count: 1, RetryAfter: "120"}, want: ErrUnavailable, kind: KindUnavailable, retry: 2 * time.Minute, wantRetry: true},
		{name: "a dropped connection is unavailable", fault: herokustub.Fault{Drop: true, Count: 1}, want: ErrUnavailable, kind: KindUnavailable, retry: defaultUnavailableRetry, wantRetry: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(_ *herokustub.Options, co *Options) {
				if tt.key != "" {
					co.APIKey = tt.key
				}
			})
			e.stub.CreateApp("shop", "container")
			if tt.fault != (herokustub.Fault{}) {
				e.stub.Faults().Add(tt.fault)
			}
			_, err := e.client.App(context.Background(), "shop")
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var he *Error
			if !errors.As(err, &he) || he.Kind != tt.kind {
				t.Fatalf("err = %#v, want kind %v", err, tt.kind)
			}
			d, ok := RetryAfter(err)
			if ok != tt.wantRetry || d != tt.retry {
				t.Errorf("RetryAfter = %v, %v; want %v, %v", d, ok, tt.retry, tt.wantRetry)
			}
			if tt.fault.Drop {
				if he.StatusCode != 0 || errors.Unwrap(err) == nil {
					t.Errorf("dropped: %#v", he)
				}
			} else if he.RequestID == "" {
				t.Errorf("no request id in %v", err)
			}
			// Every other sentinel must not match.
			for _, s := range []error{ErrNotFound, ErrUnauthorized, ErrForbidden, ErrRateLimited, ErrUnavailable, ErrInvalidParams} {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("err also matches %v", s)
				}
			}
		})
	}
}

func TestA429StormEndsInATypedErrorWithoutBlockingOrHammering(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	e.stub.Faults().Add(herokustub.Fault{Status: 429}) // until cleared
	// A context that is never cancelled: a client that waited for it, or
	// slept out the back-off, would hang this test.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 20 {
		_, err := e.client.App(ctx, "shop")
		if !errors.Is(err, ErrRateLimited) {
			t.Fatalf("call %d: err = %v", i, err)
		}
		if d, ok := RetryAfter(err); !ok || d <= 0 || d > time.Minute {
			t.Fatalf("call %d: RetryAfter = %v, %v", i, d, ok)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the context ended")
	}
	if n := len(e.apiCalls()); n != 1 {
		t.Errorf("Heroku saw %d calls during the storm, want 1 (later calls wait for Retry-After)", n)
	}
	// After the back-off the client asks again; the storm goes on.
	e.clock.Advance(time.Minute)
	if _, err := e.client.App(ctx, "shop"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("err = %v", err)
	}
	if n := len(e.apiCalls()); n != 2 {
		t.Errorf("calls = %d, want 2", n)
	}
	// The storm ends.
	e.stub.Faults().Clear()
	e.clock.Advance(time.Minute)
	if _, err := e.client.App(ctx, "shop"); err != nil {
		t.Fatalf("after the storm: %v", err)
	}
}

func TestTheAccountBudgetRunsOutAndRefills(t *testing.T) {
	e := newEnv(t, func(so *herokustub.Options, _ *Options) { so.RateLimitBudget = 3 })
	e.stub.CreateApp("shop", "container")
	ctx := context.Background()
	for i := range 3 {
		if _, err := e.client.App(ctx, "shop"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if n, _ := e.client.RateLimitRemaining(); n != 2-i {
			t.Errorf("call %d: remaining = %d", i, n)
		}
	}
	n, err := e.client.AccountRateLimit(ctx)
	if err != nil || n != 0 {
		t.Errorf("account rate limit = %d, %v", n, err)
	}
	_, err = e.client.App(ctx, "shop")
	var he *Error
	if !errors.As(err, &he) || he.Kind != KindRateLimited || he.StatusCode != 429 || he.ID != "rate_limit" {
		t.Fatalf("err = %#v", err)
	}
	e.clock.Advance(time.Minute) // 75 tokens, capped at 3
	if _, err := e.client.App(ctx, "shop"); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	if n, _ := e.client.RateLimitRemaining(); n != 2 {
		t.Errorf("remaining after refill = %d", n)
	}
}

func TestTheClientSideLimiterRefusesWithoutCalling(t *testing.T) {
	e := newEnv(t, func(_ *herokustub.Options, co *Options) { co.RequestsPerHour = 4 })
	e.stub.CreateApp("shop", "container")
	ctx := context.Background()
	for range 2 {
		if _, err := e.client.App(ctx, "shop"); err != nil {
			t.Fatal(err)
		}
	}
	// Two tokens left: not enough for the three calls of a release.
	_, _, err := e.client.ReleaseImages(ctx, "shop", map[string]string{"web": "sha256:" + strings.Repeat("a", 64)})
	if d, ok := RetryAfter(err); !errors.Is(err, ErrRateLimited) || !ok || d != 15*time.Minute {
		t.Fatalf("release: err = %v, retry %v", err, d)
	}
	for range 2 {
		if _, err := e.client.App(ctx, "shop"); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.client.App(ctx, "shop")
	var he *Error
	if !errors.As(err, &he) || he.Kind != KindRateLimited || he.StatusCode != 0 || he.RetryAfter != 15*time.Minute {
		t.Fatalf("err = %#v", err)
	}
	if n := len(e.apiCalls()); n != 4 {
		t.Errorf("Heroku saw %d calls, want 4", n)
	}
	calls, _ := e.observed.snapshot()
	if last := calls[len(calls)-1]; last != (observedCall{"app.info", 0}) {
		t.Errorf("last observed call = %+v", last)
	}
	e.clock.Advance(15 * time.Minute)
	if _, err := e.client.App(ctx, "shop"); err != nil {
		t.Fatalf("after refill: %v", err)
	}
}

func TestTheObserverSeesEveryCallAndRateLimitRemaining(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	ctx := context.Background()
	_, _ = e.client.App(ctx, "shop")
	_, _ = e.client.App(ctx, "nope")
	_, _ = e.client.CurrentRelease(ctx, "shop")
	calls, remaining := e.observed.snapshot()
	want := []observedCall{{"app.info", 200}, {"app.info", 404}, {"release.list", 206}}
	if len(calls) != len(want) {
		t.Fatalf("calls = %+v", calls)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d = %+v, want %+v", i, calls[i], want[i])
		}
	}
	if len(remaining) != 3 || remaining[0] != 4499 || remaining[2] != 4497 {
		t.Errorf("remaining = %v", remaining)
	}
	// A nil observer is fine.
	c, _ := New(Options{APIKey: testKey, BaseURL: e.api.URL})
	if _, err := c.App(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
}

func TestTheCallersContextIsUsed(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	reached := make(chan struct{}, 1)
	e.stub.Faults().Add(herokustub.Fault{Hang: true, Count: 1, Reached: reached})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-reached; cancel() }() // the caller gives up while Heroku hangs
	_, err := e.client.App(ctx, "shop")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var he *Error
	if errors.As(err, &he) {
		t.Errorf("a cancelled caller is not a Heroku error: %#v", he)
	}
}

func TestACallWithoutADeadlineGetsTheClientTimeout(t *testing.T) {
	e := newEnv(t, func(_ *herokustub.Options, co *Options) { co.RequestTimeout = time.Millisecond })
	e.stub.CreateApp("shop", "container")
	e.stub.Faults().HangNext(1) // held until the client gives up
	_, err := e.client.App(context.Background(), "shop")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestRegistryCredentials(t *testing.T) {
	c, _ := New(Options{APIKey: testKey, RegistryHost: "registry.example"})
	if c.RegistryHost() != "registry.example" {
		t.Error(c.RegistryHost())
	}
	ac, err := c.RegistryAuth().Authorization()
	if err != nil || ac.Username != "_" || ac.Password != testKey {
		t.Errorf("auth = %+v, %v", ac, err)
	}
	auth := RegistryAuth(testKey)
	if ac, err := auth.Authorization(); err != nil || ac.Username != "_" || ac.Password != testKey {
		t.Errorf("RegistryAuth(key) = %+v, %v", ac, err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", auth, auth, auth, auth); strings.Contains(s, testKey) {
		t.Errorf("RegistryAuth(key) prints the key: %s", s)
	}
}

func TestRequestsCarryHerokusHeaders(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		_, _ = w.Write([]byte(`{"name":"shop","stack":{"name":"container"}}`))
	}))
	defer srv.Close()
	c, _ := New(Options{APIKey: testKey, BaseURL: srv.URL, UserAgent: "herokunix/1.0"})
	if _, err := c.App(context.Background(), "shop"); err != nil {
		t.Fatal(err)
	}
	if got.Get("Authorization") != "Bearer "+testKey || got.Get("Accept") != acceptV3 ||
		got.Get("User-Agent") != "herokunix/1.0" || len(got.Get("Request-Id")) != 36 {
		t.Errorf("headers = %v", got)
	}
}

// SendImages is the PATCH alone, and sending the same images again is
// safe once their release ran: Heroku skips every type already running
// its image and makes no release; a changed type alone makes one.
func TestSendImagesAgainMakesNoReleaseAndAChangedTypeOne(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	web, worker := e.push(t, "shop/web"), e.push(t, "shop/worker")
	ctx := context.Background()
	images := map[string]string{"web": web, "worker": worker}
	if err := e.client.SendImages(ctx, "shop", images); err != nil {
		t.Fatal(err)
	}
	made := len(e.stub.Releases("shop"))
	if err := e.client.SendImages(ctx, "shop", images); err != nil {
		t.Fatal(err)
	}
	if n := len(e.stub.Releases("shop")); n != made {
		t.Errorf("sending the running images again made %d releases", n-made)
	}
	images["web"] = e.push(t, "shop/web")
	if err := e.client.SendImages(ctx, "shop", images); err != nil {
		t.Fatal(err)
	}
	rels := e.stub.Releases("shop")
	if len(rels) != made+1 || rels[len(rels)-1].Images["web"] != images["web"] || rels[len(rels)-1].Images["worker"] != worker {
		t.Errorf("after changing web: %d releases, latest %+v", len(rels)-made, rels[len(rels)-1])
	}
	if err := e.client.SendImages(ctx, "shop", map[string]string{"web": "latest"}); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("a malformed image ID: %v, want invalid params without a call", err)
	}
}
