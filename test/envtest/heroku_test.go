package envtest

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/test/herokustub"
	"github.com/herokunix/herokunix/test/kubelet"
)

// A Fir app takes no container images: the resource stops with
// UnsupportedGeneration before any build, registry or formation call, and
// says to use a Cedar app, never to change the stack.
func TestAFirAppStopsBeforeAnyRegistryOrFormationCall(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	h.stub.CreateFirApp("fir-shop")
	app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = "fir-shop" })
	got := h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonUnsupportedGeneration)
	ready := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReady)
	if !strings.Contains(ready.Message, "Cedar") || strings.Contains(ready.Message, "stack:set") {
		t.Errorf("message %q: want it to say to use a Cedar app, and never stack:set", ready.Message)
	}
	if got.Status.Build != nil {
		t.Errorf("a build started: %+v", got.Status.Build)
	}
	for _, c := range h.stub.Calls() {
		if c.Handler == "registry" || c.IsWrite() || strings.Contains(c.Path, "/formation") {
			t.Errorf("called %s %s %s", c.Handler, c.Method, c.Path)
		}
	}
}

// A push the registry refused with 401 is a credentials problem: the
// resource stalls with Unauthorized, not BuildFailed, and releases nothing.
func TestAPushTheRegistryRefusedIsUnauthorizedNotABuildFailure(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	before := len(h.stub.Releases(testHerokuApp))
	app := h.newApp("shop")
	msg, err := (&artifact.Failure{Failure: artifact.FailureUnauthorized, Message: "pushing to registry.heroku.com: UNAUTHORIZED: authentication required"}).Encode()
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(kubelet.FailPush(h.ctx, k8sClient, h.buildJob(app), string(msg))).To(Succeed())
	got := h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonUnauthorized)
	if c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionBuilt); c == nil || c.Reason != herokunixv1.ReasonUnauthorized {
		t.Errorf("Built %+v, want Unauthorized", c)
	}
	if h.releasesMadeSince(before) != 0 {
		t.Error("released after a refused push")
	}
}

// loseThePatchAnswer lets Heroku apply the first formation PATCH but loses
// its answer, as a network failing at the worst moment (or a controller
// stopped right after sending) would: the release is made, the controller
// cannot know.
func (h *harness) loseThePatchAnswer() *atomic.Bool {
	var lost atomic.Bool
	stub := h.stub.APIHandler()
	h.api.Store(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/formation") && lost.CompareAndSwap(false, true) {
			stub.ServeHTTP(httptest.NewRecorder(), r)
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"id":"unavailable","message":"lost"}`, http.StatusServiceUnavailable)
			return
		}
		stub.ServeHTTP(w, r)
	}))
	return &lost
}

// withRelease adds a release-phase process type.
func withRelease(a *herokunixv1.HerokuNixApp) {
	a.Spec.Processes["release"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.migrate"}
}

// completeReleasePhase ends the app's pending release once there is one.
func (h *harness) completeReleasePhase(succeed bool) {
	h.t.Helper()
	h.g.Eventually(func() error { return h.stub.CompletePendingRelease(testHerokuApp, succeed) }).
		WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
}

// deployedWithRelease deploys web and release images to Ready.
func (h *harness) deployedWithRelease(name string) (*herokunixv1.HerokuNixApp, *artifact.Result) {
	h.t.Helper()
	app := h.newApp(name, withRelease)
	res := h.pushImages("release", "web")
	h.completeJob(h.buildJob(app), res)
	h.completeReleasePhase(true)
	return h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased), res
}

// Exactly one release per desired revision, whatever Heroku's description
// of a multi-type release says (only the updated types, another join, no
// types at all) and though the answer to the PATCH is lost while the new
// release runs its release phase: herokunix waits for it and adopts it.
func TestOneReleasePerRevisionWhateverTheDescription(t *testing.T) {
	for name, describe := range map[string]func(map[string]string) string{
		"only the updated types, comma-joined": herokustub.DescribeUpdated,
		"another join": func(u map[string]string) string {
			var parts []string
			for _, typ := range slices.Sorted(maps.Keys(u)) {
				parts = append(parts, typ+":"+strings.TrimPrefix(u[typ], "sha256:")[:7])
			}
			return "Deploy " + strings.Join(parts, " + ")
		},
		"no types": func(map[string]string) string { return "Deployed images" },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarnessWithStub(t, herokustub.Options{Describe: describe})
			h.createSecret()
			app, first := h.deployedWithRelease("shop")

			// A new revision changes web only; release keeps its image.
			before := len(h.stub.Releases(testHerokuApp))
			h.loseThePatchAnswer()
			cur := h.get(app)
			cur.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.web2"}
			h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
			second := h.pushImages("web")
			second.Images["release"] = first.Images["release"]
			h.completeJob(h.buildJob(app), second)
			h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonReleasePending)
			h.completeReleasePhase(true)
			got := h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)

			if n := h.releasesMadeSince(before); n != 1 {
				t.Errorf("made %d releases for one revision, want 1", n)
			}
			rels := h.stub.Releases(testHerokuApp)
			last := rels[len(rels)-1]
			if got.Status.Release.ID != last.ID || last.Images["web"] != second.Images["web"].ImageID || got.Status.ReleaseIntent != nil {
				t.Errorf("status release %+v (intent %+v), Heroku's latest %+v", got.Status.Release, got.Status.ReleaseIntent, last)
			}
		})
	}
}

// A config var change while the formation holds a release image makes a
// release in its release phase: it is waited for (no release over it), and
// then adopted, neither drift nor a reason to release again. When it fails,
// Heroku keeps running herokunix's release, which stays Ready.
func TestSomeoneElsesReleasePhaseIsWaitedForNotReleasedOver(t *testing.T) {
	for _, succeed := range []bool{true, false} {
		t.Run(fmt.Sprintf("succeeds=%v", succeed), func(t *testing.T) {
			h := newHarness(t)
			h.createSecret()
			app, _ := h.deployedWithRelease("shop")
			ours := h.get(app).Status.Release
			before := len(h.stub.Releases(testHerokuApp))
			v := "bar"
			h.g.Expect(h.stub.SetConfigVars(testHerokuApp, map[string]*string{"FOO": &v})).To(Succeed())
			h.requestReconcile(app)
			h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonReleasePending)
			writes := len(h.writes())
			h.completeReleasePhase(succeed)
			got := h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
			if n := h.releasesMadeSince(before); n != 1 {
				t.Errorf("%d releases after the config change, want only its own", n)
			}
			rels := h.stub.Releases(testHerokuApp)
			want := rels[len(rels)-1].ID // adopted
			if !succeed {
				want = ours.ID // Heroku still runs ours
			}
			if got.Status.Release.ID != want {
				t.Errorf("status release %s, want %s", got.Status.Release.ID, want)
			}
			if !succeed && len(h.writes()) != writes {
				t.Errorf("wrote %v after someone else's release failed", h.writes()[writes:])
			}
			for _, e := range h.events(app) {
				if e.Reason == herokunixv1.ReasonDriftDetected {
					t.Errorf("a config change was reported as drift: %s", e.Note)
				}
			}
		})
	}
}

// A release type that leaves the spec is removed from the app before the
// next release, so Heroku stops running the old release command; the
// removal is evented.
func TestARemovedReleaseTypeStopsRunning(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, _ := h.deployedWithRelease("shop")
	cur := h.get(app)
	delete(cur.Spec.Processes, "release")
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	h.completeJob(h.buildJob(app), h.pushImages("web"))
	got := h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	if img := h.stub.ReleaseImage(testHerokuApp); img != "" {
		t.Errorf("the formation still holds release image %s", img)
	}
	rels := h.stub.Releases(testHerokuApp)
	if last := rels[len(rels)-1]; last.Status != "succeeded" || got.Status.Release.ID != last.ID {
		t.Errorf("the new release %+v ran a release phase or was not recorded (%+v)", last, got.Status.Release)
	}
	h.eventuallyEvents(app, "ProcessTypeRemoved")
}
