package envtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/test/herokustub"
)

// watchVersions records every version of every HerokuNixApp of the
// namespace as written, until the returned function is called.
func (h *harness) watchVersions() func() []string {
	h.t.Helper()
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	h.g.Expect(err).NotTo(HaveOccurred())
	w, err := wc.Watch(h.ctx, &herokunixv1.HerokuNixAppList{}, client.InNamespace(h.ns))
	h.g.Expect(err).NotTo(HaveOccurred())
	var versions []string
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for ev := range w.ResultChan() {
			b, _ := json.Marshal(ev.Object)
			versions = append(versions, string(b))
		}
	}()
	return func() []string {
		w.Stop()
		<-collected
		return versions
	}
}

func randomValue(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func TestASecretSourcedConfigVarIsChangedThenRemovedOneReleaseEach(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	first, second := randomValue("pg-one-"), randomValue("pg-two-")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-db", Namespace: h.ns},
		StringData: map[string]string{"url": first}}
	h.g.Expect(k8sClient.Create(h.ctx, secret)).To(Succeed())
	h.g.Expect(h.stub.SetConfigVars(testHerokuApp, map[string]*string{"UNMANAGED": ptr.To("by-hand")})).To(Succeed())
	versions := h.watchVersions()

	app, _ := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Config = []herokunixv1.ConfigVar{
			{Name: "DATABASE_URL", ValueFrom: &herokunixv1.ConfigVarSource{SecretKeyRef: &herokunixv1.KeyRef{Name: "shop-db", Key: "url"}}},
			{Name: "LOG_LEVEL", Value: ptr.To("debug")},
		}
	})
	h.g.Expect(h.stub.ConfigVars(testHerokuApp)).To(Equal(map[string]string{"DATABASE_URL": first, "LOG_LEVEL": "debug", "UNMANAGED": "by-hand"}))
	got := h.get(app)
	h.g.Expect(got.Status.Config).NotTo(BeNil())
	h.g.Expect(got.Status.Config.Keys).To(Equal([]string{"DATABASE_URL", "LOG_LEVEL"}))

	// The Secret changes: picked up by the watch, one release.
	before := len(h.stub.Releases(testHerokuApp))
	secret.StringData = map[string]string{"url": second}
	h.g.Expect(k8sClient.Update(h.ctx, secret)).To(Succeed())
	h.g.Eventually(func() string { return h.stub.ConfigVars(testHerokuApp)["DATABASE_URL"] }).WithTimeout(30 * time.Second).Should(Equal(second))
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	h.g.Consistently(func() int { return h.releasesMadeSince(before) }).WithTimeout(time.Second).Should(Equal(1))
	rels := h.stub.Releases(testHerokuApp)
	h.g.Expect(rels[len(rels)-1].Description).To(Equal("Set DATABASE_URL config vars"))

	// The var leaves the spec: removed from Heroku, one release.
	before = len(rels)
	cur := h.get(app)
	cur.Spec.Config = cur.Spec.Config[1:]
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	h.g.Eventually(func() map[string]string { return h.stub.ConfigVars(testHerokuApp) }).WithTimeout(30 * time.Second).
		Should(Equal(map[string]string{"LOG_LEVEL": "debug", "UNMANAGED": "by-hand"}))
	got = h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	h.g.Consistently(func() int { return h.releasesMadeSince(before) }).WithTimeout(time.Second).Should(Equal(1))
	rels = h.stub.Releases(testHerokuApp)
	h.g.Expect(rels[len(rels)-1].Description).To(Equal("Remove DATABASE_URL config vars"))
	h.g.Expect(got.Status.Config.Keys).To(Equal([]string{"LOG_LEVEL"}))
	h.g.Expect(got.Status.Release.Version).To(Equal(rels[len(rels)-1].Version), "the config release is followed as this resource's")

	// No value anywhere: every version of the resource, its events, the
	// controller's logs.
	all := versions()
	if len(all) < 5 {
		t.Errorf("saw only %d versions of the resource", len(all))
	}
	evs := h.eventuallyEvents(app, "ConfigVarsChanged")
	logs := h.logs.String()
	// The scan proves something only if what it scans speaks of the var.
	if !slices.ContainsFunc(evs, func(e eventsv1.Event) bool { return strings.Contains(e.Note, "DATABASE_URL") }) {
		t.Error("no event names DATABASE_URL; the scan would prove little")
	}
	for _, secretValue := range []string{first, second} {
		for _, v := range all {
			if strings.Contains(v, secretValue) {
				t.Errorf("a config value appears in a version of the resource: %s", v)
			}
		}
		for _, e := range evs {
			if strings.Contains(e.Note, secretValue) {
				t.Errorf("a config value appears in event %s: %s", e.Reason, e.Note)
			}
		}
		if strings.Contains(logs, secretValue) {
			t.Error("a config value appears in the controller's logs")
		}
	}
}

const prodHerokuApp = "acme-shop-prod"

func TestAPromotionReleasesTheSourcesImageIDsWithoutABuild(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	h.stub.CreateApp(prodHerokuApp, "container")
	staging, res := h.deployed("staging", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Processes["worker"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.worker"}
	})
	h.stub.ResetCalls()

	prod := h.newApp("prod", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.AppName = prodHerokuApp
		a.Spec.Flake, a.Spec.Processes = "", nil
		a.Spec.PromoteFrom = &herokunixv1.PromotionSource{Name: "staging", RequireApproval: true}
	})
	// Held for approval: nothing is copied or released.
	waiting := h.eventuallyCondition(prod, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonPromotionAwaitingApproval)
	h.g.Expect(apimeta.FindStatusCondition(waiting.Status.Conditions, herokunixv1.ConditionReady).Message).To(ContainSubstring(res.Revision))
	h.g.Expect(callsTo(h.stub.Calls(), prodHerokuApp)).To(BeEmpty())

	// Approved: copied and released, in at most 4 Platform API calls.
	cur := h.get(prod)
	cur.Annotations = map[string]string{herokunixv1.ApprovePromotionAnnotation: res.Revision}
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	got := h.eventuallyCondition(prod, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)

	want := map[string]string{}
	for pt, img := range res.Images {
		want[pt] = img.ImageID
	}
	rels := h.stub.Releases(prodHerokuApp)
	h.g.Expect(rels[len(rels)-1].Images).To(Equal(want), "prod runs exactly staging's image IDs")
	h.g.Expect(h.get(staging).Status.Release.Images).To(Equal(want))
	h.g.Expect(got.Status.Promotion).To(Equal(&herokunixv1.PromotionStatus{Source: "staging", SourceApp: testHerokuApp, Revision: res.Revision}))
	h.g.Expect(got.Status.Revision).To(Equal(res.Revision))
	h.g.Expect(got.Status.Build).To(BeNil())
	var jobs batchv1.JobList
	h.g.Expect(k8sClient.List(h.ctx, &jobs, client.InNamespace(h.ns), client.MatchingLabels{build.LabelApp: "prod"})).To(Succeed())
	h.g.Expect(jobs.Items).To(BeEmpty(), "a promotion builds nothing")

	calls := callsTo(h.stub.Calls(), prodHerokuApp)
	var api, blobUploads, manifests []string
	for _, c := range calls {
		switch {
		case c.Handler == "api":
			api = append(api, c.Method+" "+c.Path)
		case strings.Contains(c.Path, "/blobs/uploads"):
			blobUploads = append(blobUploads, c.Method+" "+c.Path)
		case c.Method == "PUT" && strings.Contains(c.Path, "/manifests/"):
			manifests = append(manifests, c.Path)
		}
	}
	t.Logf("Platform API calls of the promotion: %v", api)
	if len(api) > 4 {
		t.Errorf("the promotion spent %d Platform API calls, want at most 4: %v", len(api), api)
	}
	h.g.Expect(manifests).To(ConsistOf("/v2/"+prodHerokuApp+"/web/manifests/latest", "/v2/"+prodHerokuApp+"/worker/manifests/latest"))
	// The stand-in's registry keeps blobs by digest alone, so the HEAD
	// before each upload finds them: nothing is uploaded or mounted.
	h.g.Expect(blobUploads).To(BeEmpty())
	h.g.Expect(h.stub.Pushed(prodHerokuApp + "/web")).To(ConsistOf(want["web"]))
}

// callsTo are the calls about one Heroku app (Platform API or registry).
func callsTo(calls []herokustub.Call, app string) []herokustub.Call {
	var out []herokustub.Call
	for _, c := range calls {
		if strings.HasPrefix(c.Path, "/apps/"+app+"/") || c.Path == "/apps/"+app || strings.HasPrefix(c.Path, "/v2/"+app+"/") {
			out = append(out, c)
		}
	}
	return out
}

func TestAManagedConfigVarChangedByHandIsDrift(t *testing.T) {
	for _, policy := range []herokunixv1.DriftPolicy{herokunixv1.DriftPolicyCorrect, herokunixv1.DriftPolicyObserve} {
		t.Run(string(policy), func(t *testing.T) {
			h := newHarness(t)
			h.createSecret()
			app, _ := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) {
				a.Spec.DriftPolicy = policy
				a.Spec.Config = []herokunixv1.ConfigVar{{Name: "LOG_LEVEL", Value: ptr.To("info")}}
			})
			h.g.Expect(h.stub.SetConfigVars(testHerokuApp, map[string]*string{"LOG_LEVEL": ptr.To("debug"), "OTHER": ptr.To("x")})).To(Succeed())
			before := len(h.stub.Releases(testHerokuApp))
			h.stub.ResetCalls()
			h.requestReconcile(app)
			if policy == herokunixv1.DriftPolicyObserve {
				got := h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonDriftDetected)
				h.g.Expect(apimeta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReady).Message).To(ContainSubstring("LOG_LEVEL"))
				h.g.Expect(h.releasesMadeSince(before)).To(Equal(0), "an observing resource released")
				h.g.Expect(h.stub.ConfigVars(testHerokuApp)["LOG_LEVEL"]).To(Equal("debug"))
				return
			}
			h.g.Eventually(func() string { return h.stub.ConfigVars(testHerokuApp)["LOG_LEVEL"] }).WithTimeout(30 * time.Second).Should(Equal("info"))
			h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
			h.eventuallyEvents(app, herokunixv1.ReasonDriftDetected)
			h.g.Expect(h.stub.ConfigVars(testHerokuApp)["OTHER"]).To(Equal("x"), "an unmanaged var was touched")
			// Once corrected, a resync is one read again.
			h.stub.ResetCalls()
			h.requestReconcile(app)
			h.g.Expect(apiCalls(h.stub.Calls())).To(HaveLen(1))
		})
	}
}

func TestAConfigChangeWaitsForItsReleasePhase(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Processes["release"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.migrate"}
	})
	h.completeJob(h.buildJob(app), h.pushImages("web", "release"))
	h.eventuallyCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePending)
	h.g.Expect(h.stub.CompletePendingRelease(testHerokuApp, true)).To(Succeed())
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)

	cur := h.get(app)
	cur.Spec.Config = []herokunixv1.ConfigVar{{Name: "FEATURE_X", Value: ptr.To("on")}}
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	got := h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonReleasePending)
	rels := h.stub.Releases(testHerokuApp)
	last := rels[len(rels)-1]
	h.g.Expect(last.Status).To(Equal("pending"))
	h.g.Expect(last.Description).To(Equal("Set FEATURE_X config vars"))
	h.g.Expect(got.Status.Release.ID).To(Equal(last.ID), "the config release is followed")
	h.g.Expect(h.stub.CompletePendingRelease(testHerokuApp, true)).To(Succeed())
	got = h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	h.g.Expect(got.Status.Release.Status).To(Equal("succeeded"))
}

func apiCalls(calls []herokustub.Call) []herokustub.Call {
	var out []herokustub.Call
	for _, c := range calls {
		if c.Handler == "api" {
			out = append(out, c)
		}
	}
	return out
}
