package envtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/test/herokustub"
)

func TestFirstDeployBecomesReady(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	before := len(h.stub.Releases(testHerokuApp))
	app, res := h.deployed("shop")

	if got := h.releasesMadeSince(before); got != 1 {
		t.Errorf("made %d releases, want 1", got)
	}
	rels := h.stub.Releases(testHerokuApp)
	cur := rels[len(rels)-1]
	if !cur.Current || cur.Images["web"] != res.Images["web"].ImageID {
		t.Errorf("Heroku runs %+v, want the built image %s", cur, res.Images["web"].ImageID)
	}
	st := app.Status
	if st.Revision != res.Revision || st.ShortRevision != res.Revision[:12] || st.LockedFlake != res.LockedFlake {
		t.Errorf("status revision %q/%q/%q, want %q", st.Revision, st.ShortRevision, st.LockedFlake, res.Revision)
	}
	if st.Release == nil || st.Release.Version != cur.Version || st.Release.Name != fmt.Sprintf("v%d", cur.Version) || st.Release.Status != "succeeded" {
		t.Errorf("status release %+v, want v%d succeeded", st.Release, cur.Version)
	}
	if st.Images["web"].ImageID != res.Images["web"].ImageID || st.WebURL == "" {
		t.Errorf("status images %+v webURL %q", st.Images, st.WebURL)
	}
	for _, typ := range []string{herokunixv1.ConditionBuilt, herokunixv1.ConditionReleased} {
		if !meta.IsStatusConditionTrue(st.Conditions, typ) {
			t.Errorf("condition %s is not True: %+v", typ, st.Conditions)
		}
	}
	for _, typ := range []string{herokunixv1.ConditionReconciling, herokunixv1.ConditionStalled} {
		if c := meta.FindStatusCondition(st.Conditions, typ); c != nil {
			t.Errorf("condition %s still present on a Ready resource: %+v", typ, c)
		}
	}
	// Formation applied after the release.
	var web *herokustub.Formation
	for _, f := range h.stub.Formation(testHerokuApp) {
		if f.Type == "web" {
			web = &f
		}
	}
	if web == nil || web.Quantity != 2 || !strings.EqualFold(web.Size, "standard-1X") {
		t.Errorf("web formation %+v, want 2 x standard-1X", web)
	}
	// Events tell the story, once each.
	reasons := map[string]int{}
	for _, e := range h.eventuallyEvents(app, herokunixv1.ReasonBuildRunning, herokunixv1.ReasonBuildSucceeded, "ReleaseCreated", herokunixv1.ReasonReleased) {
		reasons[e.Reason] += int(max(1, e.DeprecatedCount))
	}
	for _, r := range []string{herokunixv1.ReasonBuildRunning, herokunixv1.ReasonBuildSucceeded, "ReleaseCreated", herokunixv1.ReasonReleased} {
		if reasons[r] != 1 {
			t.Errorf("event %s recorded %d times, want once (all: %v)", r, reasons[r], reasons)
		}
	}
}

func TestBuildJobIsWhatTheDesignSays(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Build.Timeout = &metav1.Duration{Duration: 20 * time.Minute}
	})
	job := h.buildJob(app)
	pod := job.Spec.Template.Spec
	if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 0 || job.Spec.ActiveDeadlineSeconds == nil || *job.Spec.ActiveDeadlineSeconds != 1200 {
		t.Errorf("backoffLimit %v activeDeadlineSeconds %v, want 0 and 1200", job.Spec.BackoffLimit, job.Spec.ActiveDeadlineSeconds)
	}
	if len(job.OwnerReferences) != 1 || job.OwnerReferences[0].UID != h.get(app).UID {
		t.Errorf("job is not owned by its resource: %+v", job.OwnerReferences)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("build pod mounts a service account token")
	}
	names := []string{}
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		names = append(names, c.Name)
		hasKey := false
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				hasKey = true
			}
			if strings.Contains(e.Value, h.key) {
				t.Errorf("container %s has the API key as a literal env value", c.Name)
			}
		}
		if hasKey != (c.Name == "push") {
			t.Errorf("container %s: has key = %v; only push may have it", c.Name, hasKey)
		}
	}
	if strings.Join(names, ",") != "tools,build,push" {
		t.Errorf("containers %v, want tools,build,push", names)
	}
	b, _ := json.Marshal(job)
	if strings.Contains(string(b), h.key) {
		t.Error("the API key appears in the build Job")
	}
}

func TestSpecChangeRebuildsAndReleasesAgain(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, first := h.deployed("shop")
	firstJob := app.Status.Build.Job
	before := len(h.stub.Releases(testHerokuApp))

	cur := h.get(app)
	cur.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.web2", Quantity: ptr.To[int32](2), Size: "standard-1X"}
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonBuildRunning)
	job := h.buildJob(app)
	if job.Name == firstJob {
		t.Fatalf("a changed spec reused build %s", firstJob)
	}
	second := h.pushImages("web")
	h.completeJob(job, second)
	got := h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	h.g.Eventually(func() string { return h.get(app).Status.Images["web"].ImageID }).Should(Equal(second.Images["web"].ImageID))
	if h.releasesMadeSince(before) != 1 {
		t.Errorf("made %d releases, want 1", h.releasesMadeSince(before))
	}
	if got.Status.Images["web"].ImageID == first.Images["web"].ImageID {
		t.Error("status still shows the first image")
	}
}

func TestUnchangedResyncMakesNoWriteAndAtMostOneRead(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, _ := h.deployed("shop")
	h.stub.ResetCalls()
	h.requestReconcile(app)
	var reads int
	for _, c := range h.stub.Calls() {
		if c.Handler != "api" {
			continue
		}
		if c.IsWrite() {
			t.Errorf("resync wrote to Heroku: %s %s", c.Method, c.Path)
		} else {
			reads++
		}
	}
	if reads > 1 {
		t.Errorf("resync made %d Heroku reads, want at most 1: %+v", reads, h.stub.Calls())
	}
	var jobs batchv1.JobList
	h.g.Expect(k8sClient.List(h.ctx, &jobs, client.InNamespace(h.ns))).To(Succeed())
	if len(jobs.Items) != 1 {
		t.Errorf("resync started another build: %d jobs", len(jobs.Items))
	}
}

func TestBuildFailureReportsTheLogAndReleasesNothing(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	before := len(h.stub.Releases(testHerokuApp))
	app := h.newApp("shop")
	h.failJob(h.buildJob(app), "error: attribute 'web' missing\n(use '--show-trace' to show detailed location information)")
	got := h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonBuildFailed)
	ready := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReady)
	if ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, "attribute 'web' missing") {
		t.Errorf("Ready %+v does not carry the build log", ready)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionBuilt); c == nil || c.Reason != herokunixv1.ReasonBuildFailed {
		t.Errorf("Built %+v, want BuildFailed", c)
	}
	if n := h.releasesMadeSince(before); n != 0 || len(h.writes()) != 0 {
		t.Errorf("a failed build released %d times, wrote %+v", n, h.writes())
	}
}

func TestMissingSecretStallsUntilItAppears(t *testing.T) {
	h := newHarness(t)
	app := h.newApp("shop")
	got := h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonCredentialsNotFound)
	if got.Status.Build != nil {
		t.Errorf("a build started without credentials: %+v", got.Status.Build)
	}
	h.createSecret() // the Secret watch picks it up
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonBuildRunning)
}

func TestHerokuRefusalsEndInTheRightConditionWithNothingReleased(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(h *harness) string // returns the app name to deploy to
		reason string
	}{
		{"an app on a buildpack stack", func(h *harness) string {
			h.stub.CreateApp("buildpack-app", "heroku-24")
			return "buildpack-app"
		}, herokunixv1.ReasonStackNotContainer},
		{"an app that does not exist", func(h *harness) string { return "no-such-app" }, herokunixv1.ReasonAppNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.createSecret()
			appName := tc.setup(h)
			app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = appName })
			// The app is read before a build starts: the refusal comes
			// before any build, so before the push reaches the registry.
			got := h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, tc.reason)
			if c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
				t.Errorf("Ready %+v, want False/%s", c, tc.reason)
			}
			if got.Status.Build != nil {
				t.Errorf("a build started: %+v", got.Status.Build)
			}
			if len(h.writes()) != 0 {
				t.Errorf("wrote to Heroku: %+v", h.writes())
			}
		})
	}
}

func TestRateLimitStormRequeuesWithoutReleasing(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	before := len(h.stub.Releases(testHerokuApp))
	app := h.newApp("shop")
	res := h.pushImages("web")
	job := h.buildJob(app) // the app was read before the build started
	h.stub.Faults().Add(herokustub.Fault{PathPrefix: "/apps/", Status: 429, RetryAfter: "1"})
	h.completeJob(job, res)
	got := h.eventuallyCondition(app, herokunixv1.ConditionReconciling, metav1.ConditionTrue, herokunixv1.ReasonRateLimited)
	if c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionStalled); c != nil {
		t.Errorf("a rate limit stalled the resource: %+v", c)
	}
	if h.releasesMadeSince(before) != 0 {
		t.Error("released during a 429 storm")
	}
	// Heroku asked for a second between tries: over three seconds the
	// controller may try a few times, not hammer.
	start := len(h.stub.Calls())
	h.g.Consistently(func() int { return len(h.stub.Calls()) - start }).
		WithTimeout(3 * time.Second).WithPolling(100 * time.Millisecond).Should(BeNumerically("<=", 8))
	// When the budget is back, the requeue Heroku asked for deploys.
	h.stub.Faults().Clear()
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
}

func TestReleasePhaseFailureKeepsThePreviousRelease(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	_, _ = h.deployed("shop")
	rels := h.stub.Releases(testHerokuApp)
	running := rels[len(rels)-1]

	cur := h.get(&herokunixv1.HerokuNixApp{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: h.ns}})
	cur.Spec.Processes["release"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.migrate"}
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	h.completeJob(h.buildJob(cur), h.pushImages("web", "release"))
	h.eventuallyCondition(cur, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePending)
	h.g.Expect(h.stub.CompletePendingRelease(testHerokuApp, false)).To(Succeed())
	got := h.eventuallyCondition(cur, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonReleasePhaseFailed)
	if c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReleased); c.Reason != herokunixv1.ReasonReleasePhaseFailed {
		t.Errorf("Released %+v", c)
	}
	var current herokustub.Release
	for _, r := range h.stub.Releases(testHerokuApp) {
		if r.Current {
			current = r
		}
	}
	if current.ID != running.ID {
		t.Errorf("Heroku runs %s (v%d), want the previous release v%d", current.ID, current.Version, running.Version)
	}
}

func TestDeletionPolicies(t *testing.T) {
	for _, policy := range []herokunixv1.DeletionPolicy{herokunixv1.DeletionPolicyRetain, herokunixv1.DeletionPolicyScaleToZero} {
		t.Run(string(policy), func(t *testing.T) {
			h := newHarness(t)
			h.createSecret()
			app, _ := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.DeletionPolicy = policy })
			h.g.Expect(k8sClient.Delete(h.ctx, app)).To(Succeed())
			h.g.Eventually(func() bool {
				return apierrors.IsNotFound(k8sClient.Get(h.ctx, client.ObjectKeyFromObject(app), &herokunixv1.HerokuNixApp{}))
			}).WithTimeout(30 * time.Second).Should(BeTrue())
			for _, f := range h.stub.Formation(testHerokuApp) {
				if f.Type != "web" {
					continue
				}
				want := 2
				if policy == herokunixv1.DeletionPolicyScaleToZero {
					want = 0
				}
				if f.Quantity != want {
					t.Errorf("web quantity %d after deletion with %s, want %d", f.Quantity, policy, want)
				}
			}
		})
	}
}

func TestDeletionWithoutCredentialsEndsWithinItsBound(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, _ := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.DeletionPolicy = herokunixv1.DeletionPolicyScaleToZero })
	h.g.Expect(k8sClient.Delete(h.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "heroku", Namespace: h.ns}})).To(Succeed())
	h.g.Expect(k8sClient.Delete(h.ctx, app)).To(Succeed())
	h.g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(h.ctx, client.ObjectKeyFromObject(app), &herokunixv1.HerokuNixApp{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	found := false
	for _, e := range h.eventuallyEvents(app, herokunixv1.ReasonDeleting) {
		found = found || (e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, "gave up scaling"))
	}
	if !found {
		t.Error("no warning event says the scale-down was given up")
	}
}

func TestTwoResourcesForOneAppTheYoungerStalls(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	older, _ := h.deployed("shop")
	younger := h.newApp("shop-copy")
	got := h.eventuallyCondition(younger, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonAppConflict)
	if c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionStalled); !strings.Contains(c.Message, older.Name) {
		t.Errorf("conflict message %q does not name the owner", c.Message)
	}
	h.eventuallyCondition(older, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
}

func TestSuspendStartsNothing(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.Suspend = true })
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonSuspended)
	var jobs batchv1.JobList
	h.g.Expect(k8sClient.List(h.ctx, &jobs, client.InNamespace(h.ns))).To(Succeed())
	if len(jobs.Items) != 0 || len(h.stub.Calls()) != 0 {
		t.Errorf("a suspended resource started %d jobs and made %d Heroku calls", len(jobs.Items), len(h.stub.Calls()))
	}
	cur := h.get(app)
	cur.Spec.Suspend = false
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonBuildRunning)
}

// releaseByHand makes a release the controller did not make, as someone
// running `heroku container:release` would.
func releaseByHand(h *harness) {
	h.t.Helper()
	other := h.pushImages("web")
	c, err := heroku.New(heroku.Options{APIKey: h.key, BaseURL: h.herokuURL, RegistryHost: h.registryHost})
	h.g.Expect(err).NotTo(HaveOccurred())
	_, outcome, err := c.ReleaseImages(context.Background(), testHerokuApp, map[string]string{"web": other.Images["web"].ImageID})
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(outcome).To(Equal(heroku.Released))
}

func TestDriftIsCorrected(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, res := h.deployed("shop")
	releaseByHand(h)
	h.requestReconcile(app)
	h.g.Eventually(func() string {
		rels := h.stub.Releases(testHerokuApp)
		return rels[len(rels)-1].Images["web"]
	}).WithTimeout(30 * time.Second).Should(Equal(res.Images["web"].ImageID))
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	h.eventuallyEvents(app, herokunixv1.ReasonDriftDetected)
}

func TestDriftIsOnlyReportedWhenObserving(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, _ := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.DriftPolicy = herokunixv1.DriftPolicyObserve })
	releaseByHand(h)
	setConfigVar(h) // a later config release must not hide the image release
	before := len(h.stub.Releases(testHerokuApp))
	h.requestReconcile(app)
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonDriftDetected)
	if h.releasesMadeSince(before) != 0 {
		t.Error("an observing resource released")
	}
}

func TestAPIKeyAppearsNowhere(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	// Every version of every resource in the namespace, as written.
	collect := h.watchVersions()
	// A failing and a succeeding deploy, so error paths are logged too.
	h.stub.Faults().Add(herokustub.Fault{PathPrefix: "/apps/", Count: 3, Status: 503, RetryAfter: "1"})
	app, _ := h.deployed("shop")
	versions := collect()
	if len(versions) < 3 {
		t.Errorf("saw only %d versions of the resource", len(versions))
	}
	sawRetry := false
	for _, v := range versions {
		sawRetry = sawRetry || strings.Contains(v, "retrying")
		if strings.Contains(v, h.key) {
			t.Errorf("the API key appears in a version of the resource: %s", v)
		}
	}
	if !sawRetry {
		t.Error("no version of the resource recorded the failing calls; the scan would prove little")
	}
	for _, e := range h.eventuallyEvents(app, herokunixv1.ReasonReleased) {
		if strings.Contains(e.Note, h.key) {
			t.Errorf("the API key appears in event %s", e.Reason)
		}
	}
	if logs := h.logs.String(); logs == "" || strings.Contains(logs, h.key) {
		t.Errorf("controller logs are empty (%d bytes) or contain the API key", len(logs))
	}
}

func TestMovingRefIsRebuiltOnlyWhenItsRevisionChanged(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, first := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.Flake = "github:acme/shop?ref=main" })
	firstJob := app.Status.Build.Job
	before := len(h.stub.Releases(testHerokuApp))

	// A refresh that finds the same revision: nothing is pushed or released,
	// and the deployed release stays Ready while it runs.
	h.requestReconcile(app)
	refresh := h.buildJob(app)
	if refresh.Name == firstJob {
		t.Fatal("the refresh reused the first build's Job")
	}
	if ready := meta.FindStatusCondition(h.get(app).Status.Conditions, herokunixv1.ConditionReady); ready.Status != metav1.ConditionTrue {
		t.Errorf("Ready went %s during a background refresh", ready.Status)
	}
	h.completeJob(refresh, &artifact.Result{Revision: first.Revision, LockedFlake: first.LockedFlake, Unchanged: true})
	h.g.Eventually(func() *metav1.Time { return h.get(app).Status.Build.CompletionTime }).ShouldNot(BeNil())
	if got := h.get(app); h.releasesMadeSince(before) != 0 || got.Status.Images["web"].ImageID != first.Images["web"].ImageID {
		t.Errorf("an unchanged refresh released %d times or changed images to %+v", h.releasesMadeSince(before), got.Status.Images)
	}

	// A refresh that finds a new revision is released.
	h.requestReconcile(app)
	second := h.pushImages("web")
	h.completeJob(h.buildJob(app), second)
	h.g.Eventually(func() string {
		rels := h.stub.Releases(testHerokuApp)
		return rels[len(rels)-1].Images["web"]
	}).WithTimeout(30 * time.Second).Should(Equal(second.Images["web"].ImageID))
	h.g.Eventually(func() string { return h.get(app).Status.Revision }).Should(Equal(second.Revision))
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
}

func TestALostAnswerAfterReleasingDoesNotReleaseTwice(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	before := len(h.stub.Releases(testHerokuApp))
	h.loseAnswersAfterRelease()
	app := h.newApp("shop")
	res := h.pushImages("web")
	h.completeJob(h.buildJob(app), res)
	got := h.eventuallyConditionWithin(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased, time.Minute)
	if n := h.releasesMadeSince(before); n != 1 {
		t.Errorf("made %d releases, want 1", n)
	}
	rels := h.stub.Releases(testHerokuApp)
	if got.Status.Release.ID != rels[len(rels)-1].ID {
		t.Errorf("status release %s, want the one Heroku made (%s)", got.Status.Release.ID, rels[len(rels)-1].ID)
	}
}

// setConfigVar changes a config var as `heroku config:set` does, which
// makes a new release of the same images.
func setConfigVar(h *harness) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, h.herokuURL+"/apps/"+testHerokuApp+"/config-vars", strings.NewReader(`{"FOO":"bar"}`))
	req.Header.Set("Authorization", "Bearer "+h.key)
	req.Header.Set("Accept", "application/vnd.heroku+json; version=3")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	h.g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	h.g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
}

func TestAConfigVarReleaseIsNotDrift(t *testing.T) {
	for _, policy := range []herokunixv1.DriftPolicy{herokunixv1.DriftPolicyCorrect, herokunixv1.DriftPolicyObserve} {
		t.Run(string(policy), func(t *testing.T) {
			h := newHarness(t)
			h.createSecret()
			app, _ := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.DriftPolicy = policy })
			setConfigVar(h)
			before := len(h.stub.Releases(testHerokuApp))
			rels := h.stub.Releases(testHerokuApp)
			configRelease := rels[len(rels)-1]
			h.requestReconcile(app)
			got := h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
			if n := h.releasesMadeSince(before); n != 0 {
				t.Errorf("a config change led to %d new releases", n)
			}
			if got.Status.Release.ID != configRelease.ID {
				t.Errorf("status release %s, want the config release %s adopted", got.Status.Release.Name, releaseNameOf(configRelease))
			}
			for _, e := range h.events(app) {
				if e.Reason == herokunixv1.ReasonDriftDetected {
					t.Errorf("a config change was reported as drift: %s", e.Note)
				}
			}
		})
	}
}

func releaseNameOf(r herokustub.Release) string { return fmt.Sprintf("v%d", r.Version) }

func TestDeletingTheYoungerOfTwoDoesNotScaleTheOthersApp(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	h.deployed("shop")
	younger := h.newApp("shop-copy", func(a *herokunixv1.HerokuNixApp) { a.Spec.DeletionPolicy = herokunixv1.DeletionPolicyScaleToZero })
	h.eventuallyCondition(younger, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonAppConflict)
	var jobs batchv1.JobList
	h.g.Expect(k8sClient.List(h.ctx, &jobs, client.InNamespace(h.ns), client.MatchingLabels{"herokunix.dev/app": "shop-copy"})).To(Succeed())
	if len(jobs.Items) != 0 {
		t.Errorf("the conflicting resource started %d builds", len(jobs.Items))
	}
	h.g.Expect(k8sClient.Delete(h.ctx, younger)).To(Succeed())
	h.g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(h.ctx, client.ObjectKeyFromObject(younger), &herokunixv1.HerokuNixApp{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	for _, f := range h.stub.Formation(testHerokuApp) {
		if f.Type == "web" && f.Quantity != 2 {
			t.Errorf("deleting the younger resource scaled web to %d", f.Quantity)
		}
	}
}

func TestAFailedRefreshKeepsTheReleaseReady(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, _ := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.Flake = "github:acme/shop?ref=main" })
	before := len(h.stub.Releases(testHerokuApp))
	h.requestReconcile(app)
	h.failJob(h.buildJob(app), "error: builder for '/nix/store/…-shop.drv' failed with exit code 1")
	got := h.eventuallyCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonBuildFailed)
	ready := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReady)
	if ready.Status != metav1.ConditionTrue || !strings.Contains(ready.Message, "latest refresh failed") {
		t.Errorf("Ready %+v after a failed refresh; want True, saying the refresh failed", ready)
	}
	if meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionStalled) != nil || h.releasesMadeSince(before) != 0 {
		t.Errorf("a failed refresh stalled the resource or released: %+v", got.Status.Conditions)
	}
}

func TestSuspendingAChangedSpecIsNotReady(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, _ := h.deployed("shop")
	cur := h.get(app)
	cur.Spec.Suspend = true
	cur.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.other"}
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonSuspended)
}
