package controllers

import (
	"context"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
)

// releasedWorld is a resource that released its images as v1, which
// succeeded, before its web dynos were looked at.
func releasedWorld(t *testing.T) (*herokunixv1.HerokuNixApp, *fakeWorld, *heroku.Release) {
	t.Helper()
	app := summaryApp(true)
	app.Status.Release = &herokunixv1.ReleaseStatus{ID: "rel-1", Version: 1, Name: "v1", Status: heroku.ReleaseSucceeded, Images: builtImageIDs(app)}
	w := newFakeWorld(t, app)
	rel := w.heroku.release("Deployed web ("+strings.TrimPrefix(app.Status.Images["web"].ImageID, "sha256:")[:12]+")", heroku.ReleaseSucceeded)
	return app, w, rel
}

func TestJudgeWebDynosCountsOnlyTheReleasesWebDynos(t *testing.T) {
	d := func(name, state string, version int) heroku.Dyno {
		typ, _, _ := strings.Cut(name, ".")
		return heroku.Dyno{Name: name, Type: typ, State: state, ReleaseVersion: version}
	}
	for _, tc := range []struct {
		name  string
		dynos []heroku.Dyno
		want  int
		state string
	}{
		{"no dyno of the release yet, the old one still up", []heroku.Dyno{d("web.1", "up", 6)}, 1, herokunixv1.DynoStateStarting},
		{"the release's web dyno is up", []heroku.Dyno{d("web.1", "up", 7)}, 1, herokunixv1.DynoStateUp},
		{"the release's web dyno is starting", []heroku.Dyno{d("web.1", "starting", 7)}, 1, herokunixv1.DynoStateStarting},
		{"one of two is up, two are wanted", []heroku.Dyno{d("web.1", "up", 7), d("web.2", "starting", 7)}, 2, herokunixv1.DynoStateStarting},
		{"one crashed while another is up", []heroku.Dyno{d("web.1", "up", 7), d("web.2", "crashed", 7)}, 2, herokunixv1.DynoStateCrashed},
		{"a crashed dyno of an older release does not count", []heroku.Dyno{d("web.1", "crashed", 6), d("web.2", "up", 7)}, 1, herokunixv1.DynoStateUp},
		{"a crashed worker does not count", []heroku.Dyno{d("worker.1", "crashed", 7), d("web.1", "up", 7)}, 1, herokunixv1.DynoStateUp},
		{"an eco dyno asleep booted", []heroku.Dyno{d("web.1", "idle", 7)}, 1, herokunixv1.DynoStateUp},
		{"a dyno that is down is not up", []heroku.Dyno{d("web.1", "down", 7)}, 1, herokunixv1.DynoStateStarting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, summary := judgeWebDynos(tc.dynos, 7, tc.want); got != tc.state {
				t.Errorf("state %q (%s), want %q", got, summary, tc.state)
			}
		})
	}
}

// TestServingCostsDynoListsPerReleaseNeverPerResync runs passes over a
// deployed resource whose release's web dyno starts, then is up: one
// Dynos call per look until it is up, none on the resyncs after.
func TestServingCostsDynoListsPerReleaseNeverPerResync(t *testing.T) {
	app, w, _ := releasedWorld(t)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}
	w.r.DynoPollInterval = 3e9

	w.heroku.dynoState = heroku.DynoStarting
	for look := 1; look <= 2; look++ {
		res, err := w.r.Reconcile(context.Background(), req)
		if err != nil || res.RequeueAfter != w.r.DynoPollInterval {
			t.Fatalf("look %d: %+v, %v; want a requeue after the dyno poll", look, res, err)
		}
		got := w.get(t, app)
		if c := condition(got, herokunixv1.ConditionReady); c != "False "+herokunixv1.ReasonWaitingForDynos {
			t.Fatalf("look %d: Ready = %q while the web dyno starts", look, c)
		}
		if got.Status.Serving.Looks != int32(look) || w.heroku.dynoReads != look {
			t.Fatalf("look %d: %d looks recorded, %d Dynos calls", look, got.Status.Serving.Looks, w.heroku.dynoReads)
		}
	}
	w.heroku.dynoState = heroku.DynoUp
	if _, err := w.r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	got := w.get(t, app)
	if c := condition(got, herokunixv1.ConditionReady); c != "True "+herokunixv1.ReasonReleased || !strings.Contains(findCondition(got, herokunixv1.ConditionReady).Message, "serving (web.1 up)") {
		t.Fatalf("Ready = %q %+v once the web dyno is up", c, findCondition(got, herokunixv1.ConditionReady))
	}
	if c := condition(got, herokunixv1.ConditionServing); c != "True "+herokunixv1.ReasonDynosUp {
		t.Errorf("Serving = %q", c)
	}
	// Resyncs: the release's verdict is on status, no dyno list.
	for range 3 {
		if _, err := w.r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if w.heroku.dynoReads != 3 {
		t.Errorf("%d Dynos calls for one release (2 starting, 1 up) and 3 resyncs, want 3", w.heroku.dynoReads)
	}
}

func TestACrashedWebDynoStallsUntilTheNextRelease(t *testing.T) {
	app, w, rel := releasedWorld(t)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}
	w.heroku.dynoState = heroku.DynoCrashed
	for range 2 {
		if _, err := w.r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	got := w.get(t, app)
	stalledC := findCondition(got, herokunixv1.ConditionStalled)
	if stalledC == nil || stalledC.Reason != herokunixv1.ReasonDynosCrashed ||
		!strings.Contains(stalledC.Message, "web.1 crashed") || !strings.Contains(stalledC.Message, releaseName(rel.Version)) {
		t.Fatalf("Stalled = %+v, want DynosCrashed naming the dyno, its state and the release", stalledC)
	}
	if w.heroku.dynoReads != 1 {
		t.Errorf("%d Dynos calls, want 1: a crash is judged once per release", w.heroku.dynoReads)
	}
}

func TestTheWebDynosAreGivenUpOnAfterTheLastLook(t *testing.T) {
	app, w, _ := releasedWorld(t)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}
	w.heroku.dynoState = heroku.DynoStarting
	for range maxDynoLooks + 3 {
		if _, err := w.r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if w.heroku.dynoReads != maxDynoLooks {
		t.Errorf("%d Dynos calls, want at most %d", w.heroku.dynoReads, maxDynoLooks)
	}
	if c := condition(w.get(t, app), herokunixv1.ConditionStalled); c != "True "+herokunixv1.ReasonDynosNotUp {
		t.Errorf("Stalled = %q after the last look", c)
	}
}

func TestNoWebDynosAreLookedAtWithoutAWebProcess(t *testing.T) {
	for name, procs := range map[string]map[string]herokunixv1.Process{
		"no web type":  {"worker": {Attribute: "w"}},
		"web scaled 0": {"web": {Attribute: "w", Quantity: new(int32)}},
	} {
		t.Run(name, func(t *testing.T) {
			app := summaryApp(true)
			app.Spec.Processes = procs
			w := newFakeWorld(t)
			p := w.pass(t, app)
			if err := w.r.reconcileServing(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			if w.heroku.dynoReads != 0 || condition(app, herokunixv1.ConditionServing) != "True "+herokunixv1.ReasonNoWebDynos {
				t.Errorf("%d Dynos calls, Serving %q", w.heroku.dynoReads, condition(app, herokunixv1.ConditionServing))
			}
		})
	}
}

func TestAFailedReleasePhasePutsTheEndOfItsOutputOnReleased(t *testing.T) {
	app := summaryApp(true)
	w := newFakeWorld(t, app)
	w.heroku.pendingReleases = true
	rel := w.heroku.release("Deployed web (0123456789ab)", heroku.ReleasePending)
	rel.OutputStreamURL = "https://busl.example/streams/1"
	app.Status.Release = &herokunixv1.ReleaseStatus{ID: rel.ID, Version: rel.Version, Name: releaseName(rel.Version), Status: heroku.ReleasePending, Images: builtImageIDs(app)}
	var lines []string
	for i := range 30 {
		lines = append(lines, "migrating step "+string(rune('a'+i%26)))
	}
	w.heroku.outputs = map[string]string{rel.OutputStreamURL: strings.Join(lines, "\n") +
		"\n\x1b[31mERROR: cannot connect with key " + testAPIKey + "\x1b[0m\r\n"}
	rel.Status = heroku.ReleaseFailed
	p := w.pass(t, app)
	err := w.r.reconcileRelease(context.Background(), p)
	if err == nil {
		t.Fatal("a failed release phase did not stall")
	}
	tail := app.Status.Release.OutputTail
	if strings.Contains(tail, testAPIKey) || strings.Contains(tail, "\x1b") || strings.Contains(tail, "\r") {
		t.Errorf("tail not sanitised: %q", tail)
	}
	if !strings.HasSuffix(tail, "ERROR: cannot connect with key <redacted>") || strings.Count(tail, "\n") != outputTailLines-1 {
		t.Errorf("tail %q: want the last %d lines", tail, outputTailLines)
	}
	released := findCondition(app, herokunixv1.ConditionReleased)
	if released.Reason != herokunixv1.ReasonReleasePhaseFailed || !strings.HasSuffix(released.Message, tail) {
		t.Errorf("Released = %+v, want the tail at the end", released)
	}
}

func TestSanitizeOutputTailBoundsAndCleans(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"colours and a progress redraw", "\x1b[1;32mok\x1b[0m\nprogress 10%\rprogress 100%\n", "ok\nprogress 100%"},
		{"an OSC title and a bell", "\x1b]0;title\x07done\a\n", "done"},
		{"tabs, trailing blanks, bidi override", "a\tb  \n\u202eevil\n\n\n", "a b\nevil"},
		{"invalid UTF-8", "bad \xff byte", "bad \uFFFD byte"},
		{"the key split by an escape", "key=hk\x1b[0m-secret", "key=<redacted>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sanitizeOutputTail(tc.in, "hk-secret"); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	long := strings.Repeat("é", 2000)
	if got := sanitizeOutputTail(long, ""); len(got) > outputTailBytes || !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "é") {
		t.Errorf("a long line is kept as %d bytes %q…", len(got), got[:10])
	}
}

// FuzzSanitizeOutputTail: whatever a release command prints, the tail is
// bounded, valid UTF-8, free of control characters and of the key.
func FuzzSanitizeOutputTail(f *testing.F) {
	f.Add("Running migrations\n\x1b[31mERROR\x1b[0m\r\n", "hk-secret")
	f.Add("key=hk\x1b[0m-secret\rprogress\n\xff", "hk-secret")
	f.Fuzz(func(t *testing.T, raw, key string) {
		// Keys are letters, digits and dashes (a Heroku API key is a UUID
		// or "HRKU-…"), so "<redacted>" cannot make one.
		if len(key) < 4 || strings.IndexFunc(key, func(r rune) bool {
			return !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) >= 0 {
			key = ""
		}
		got := sanitizeOutputTail(raw, key)
		if len(got) > outputTailBytes || strings.Count(got, "\n") >= outputTailLines || !utf8.ValidString(got) {
			t.Fatalf("unbounded or invalid tail %q", got)
		}
		if key != "" && strings.Contains(strings.ReplaceAll(got, "<redacted>", "\n"), key) {
			t.Fatalf("the key is in %q", got)
		}
		for _, r := range got {
			if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
				t.Fatalf("control character %U in %q", r, got)
			}
		}
	})
}
