package envtest

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/controllers"
	"github.com/herokunix/herokunix/test/fixtures"
	"github.com/herokunix/herokunix/test/fixtures/fixturestest"
	"github.com/herokunix/herokunix/test/herokustub"
)

// maxDynoLooks is the controller's bound on dyno lists per release.
const maxDynoLooks = 24

// dynoLists counts the GET /apps/{app}/dynos the controller made.
func (h *harness) dynoLists() int {
	n := 0
	for _, c := range h.stub.Calls() {
		if c.Handler == "api" && c.Method == "GET" && strings.HasSuffix(c.Path, "/dynos") {
			n++
		}
	}
	return n
}

// withDynoPoll sets how often the controller looks at starting dynos.
func withDynoPoll(d time.Duration) harnessOption {
	return func(_ *harness, c *controllers.ReconcilerConfig, _ *controllers.Options) { c.DynoPollInterval = d }
}

// TestReadyOnlyOnceTheWebDynosAreUp releases to an app whose dynos stay
// starting until the test says: the resource waits (WaitingForDynos), then
// becomes Ready once they are up, having listed the dynos a bounded number
// of times; a resync lists them no more.
func TestReadyOnlyOnceTheWebDynosAreUp(t *testing.T) {
	h := newHarnessWithStub(t, herokustub.Options{DynoState: herokustub.DynoStarting})
	h.createSecret()
	app := h.newApp("shop")
	h.completeJob(h.buildJob(app), h.pushImages("web"))
	waiting := h.eventuallyCondition(app, herokunixv1.ConditionReconciling, metav1.ConditionTrue, herokunixv1.ReasonWaitingForDynos)
	if c := meta.FindStatusCondition(waiting.Status.Conditions, herokunixv1.ConditionReady); c.Status != metav1.ConditionFalse {
		t.Errorf("Ready %+v while the web dynos start", c)
	}
	if !meta.IsStatusConditionTrue(waiting.Status.Conditions, herokunixv1.ConditionReleased) {
		t.Errorf("Released is not True while the dynos of a succeeded release start: %+v", waiting.Status.Conditions)
	}

	h.g.Expect(h.stub.SetDynoState(testHerokuApp, "web", herokustub.DynoUp)).To(Succeed())
	got := h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	if msg := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReady).Message; !strings.Contains(msg, "serving (web.1 up, web.2 up)") {
		t.Errorf("Ready says %q, want the two web dynos up", msg)
	}
	lists := h.dynoLists()
	if lists < 2 || lists > maxDynoLooks || int(got.Status.Serving.Looks) != lists {
		t.Errorf("%d dyno lists (status: %d looks) for one release, want 2 to %d", lists, got.Status.Serving.Looks, maxDynoLooks)
	}
	h.requestReconcile(app)
	if n := h.dynoLists(); n != lists {
		t.Errorf("a resync listed the dynos again (%d lists, %d before)", n, lists)
	}
}

// TestACrashOnBootIsReportedAsNotServing builds a closure image whose web
// process exits at once (the fixture server run as `bin/server fail …`)
// and releases it to a stand-in that runs it: the release succeeds, its
// web dyno crashes, and the resource stalls with DynosCrashed.
func TestACrashOnBootIsReportedAsNotServing(t *testing.T) {
	fixturestest.RequireNix(t)
	h := newHarnessWithStub(t, herokustub.Options{RunImages: true, DynoDir: t.TempDir()}, withLocalBuilder(t), withDynoPoll(time.Second))
	h.createSecret()
	flake := fixturestest.Prepare(t, fixtures.Closure)
	app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Flake = flake
		a.Spec.Processes = map[string]herokunixv1.Process{
			"web": {Attribute: "packages.x86_64-linux.server", Command: []string{"bin/server", "fail", "error while loading shared libraries: libssl.so.3"}},
		}
	})
	got := h.eventuallyConditionWithin(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonDynosCrashed, buildTimeout)
	stalled := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionStalled)
	if !strings.Contains(stalled.Message, "web.1 crashed") || !strings.Contains(stalled.Message, got.Status.Release.Name) {
		t.Errorf("Stalled says %q, want the dyno, its state and the release", stalled.Message)
	}
	if !meta.IsStatusConditionTrue(got.Status.Conditions, herokunixv1.ConditionReleased) {
		t.Errorf("Released should stay True: Heroku ran the release; it does not serve: %+v", got.Status.Conditions)
	}
	dynos := h.stub.Dynos(testHerokuApp)
	if len(dynos) != 1 || dynos[0].State != herokustub.DynoCrashed || !strings.Contains(dynos[0].Output, "libssl.so.3") {
		t.Errorf("the stand-in's dynos: %+v", dynos)
	}
}

// TestAFailingReleasePhasePutsItsOutputTailOnTheCondition builds a release
// command that prints and exits 1 (the fixture's migrate package, which
// has the curl Heroku needs to stream), lets the stand-in run it as the
// release phase, and finds the end of its output on Released, on Ready
// and in the Warning event, with the previous release still running.
func TestAFailingReleasePhasePutsItsOutputTailOnTheCondition(t *testing.T) {
	fixturestest.RequireNix(t)
	h := newHarnessWithStub(t, herokustub.Options{RunImages: true, DynoDir: t.TempDir()}, withLocalBuilder(t), withDynoPoll(time.Second))
	h.createSecret()
	flake := fixturestest.Prepare(t, fixtures.Closure)
	app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Flake = flake
		a.Spec.Processes = map[string]herokunixv1.Process{
			"web": {Attribute: "packages.x86_64-linux.server", Command: []string{"bin/server"}},
			"release": {Attribute: "packages.x86_64-linux.migrate", Command: []string{"bin/server", "fail",
				"Running migrations", "\x1b[31mERROR: relation \"users\" does not exist\x1b[0m"}},
		}
	})
	got := h.eventuallyConditionWithin(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonReleasePhaseFailed, buildTimeout)
	const tail = "Running migrations\nERROR: relation \"users\" does not exist"
	released := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReleased)
	if got.Status.Release.OutputTail != tail || !strings.HasSuffix(released.Message, tail) {
		t.Errorf("Released says %q (tail %q), want it to end with %q", released.Message, got.Status.Release.OutputTail, tail)
	}
	found := false
	for _, e := range h.eventuallyEvents(app, herokunixv1.ReasonReleasePhaseFailed) {
		found = found || (e.Type == "Warning" && e.Reason == herokunixv1.ReasonReleasePhaseFailed && strings.HasSuffix(e.Note, tail))
	}
	if !found {
		t.Errorf("no Warning event ends with the output tail: %+v", h.events(app))
	}
	for _, r := range h.stub.Releases(testHerokuApp) {
		if r.Current && r.Images != nil {
			t.Errorf("Heroku runs %+v, though the only image release failed its release phase", r)
		}
	}
}
