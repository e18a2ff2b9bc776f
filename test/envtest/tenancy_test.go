package envtest

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/test/kubelet"
)

// inNamespace puts a resource in ns.
func inNamespace(ns string) func(*herokunixv1.HerokuNixApp) {
	return func(a *herokunixv1.HerokuNixApp) { a.Namespace = ns }
}

// conflictMessage waits for app to stall with AppConflict and returns its
// message, which must not reveal the owner in another namespace.
func (h *harness) conflictMessage(app *herokunixv1.HerokuNixApp, owner *herokunixv1.HerokuNixApp) string {
	h.t.Helper()
	got := h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonAppConflict)
	msg := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionStalled).Message
	if strings.Contains(msg, owner.Namespace) || strings.Contains(msg, owner.Name) {
		h.t.Errorf("the conflict message %q reveals %s/%s of another namespace", msg, owner.Namespace, owner.Name)
	}
	return msg
}

func (h *harness) jobsIn(ns, app string) []batchv1.Job {
	var jobs batchv1.JobList
	h.g.Expect(k8sClient.List(h.ctx, &jobs, client.InNamespace(ns), client.MatchingLabels{build.LabelApp: app})).To(Succeed())
	return jobs.Items
}

// TestASquatterInAnotherNamespaceDoesNotStallTheOwner: a resource made
// first in another namespace, naming the same Heroku app but holding no
// working credentials, never released there: the real owner deploys, and
// the squatter is the one that stalls, told nothing of the owner.
func TestASquatterInAnotherNamespaceDoesNotStallTheOwner(t *testing.T) {
	h, other := newTwoTenantHarness(t)
	squatter := h.newApp("squatter", inNamespace(other))
	h.eventuallyCondition(squatter, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonCredentialsNotFound)

	h.createSecret()
	owner, _ := h.deployed("real-owner")
	if claim := owner.Status.AppClaim; claim == nil || claim.AppID == "" || claim.Version != owner.Status.Release.Version {
		t.Errorf("status.appClaim %+v does not prove release %+v", claim, owner.Status.Release)
	}

	h.requestReconcile(squatter)
	msg := h.conflictMessage(squatter, owner)
	if !strings.Contains(msg, "different namespace") {
		t.Errorf("the conflict message %q does not say the owner is elsewhere", msg)
	}
	if jobs := h.jobsIn(other, squatter.Name); len(jobs) != 0 {
		t.Errorf("the squatter started %d builds", len(jobs))
	}
}

// TestOfTwoResourcesWithCredentialsTheFirstReleaseWins: both hold a key
// to the app and build at once; the first to release owns the app, and
// the other stalls before it releases anything. A third, made after,
// stalls before it builds.
func TestOfTwoResourcesWithCredentialsTheFirstReleaseWins(t *testing.T) {
	h, other := newTwoTenantHarness(t)
	h.createSecret()
	h.g.Expect(k8sClient.Create(h.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "heroku", Namespace: other},
		StringData: map[string]string{"apiKey": h.key}})).To(Succeed())
	second := h.newApp("beta", inNamespace(other))
	secondJob := h.buildJob(second)
	first := h.newApp("alpha")
	firstJob := h.buildJob(first)

	before := len(h.stub.Releases(testHerokuApp))
	h.completeJob(firstJob, h.pushImages(sortedProcesses(first)...))
	first = h.eventuallyCondition(first, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	h.completeJob(secondJob, h.pushImages(sortedProcesses(second)...))
	h.conflictMessage(second, first)
	if n := h.releasesMadeSince(before); n != 1 {
		t.Errorf("%d releases made; the second resource must release nothing", n)
	}
	if got := h.get(second); got.Status.Release != nil || got.Status.AppClaim != nil {
		t.Errorf("the second resource recorded a release or claim: %+v %+v", got.Status.Release, got.Status.AppClaim)
	}

	third := h.newApp("gamma", inNamespace(other))
	h.conflictMessage(third, first)
	if jobs := h.jobsIn(other, third.Name); len(jobs) != 0 {
		t.Errorf("a resource made after the owner released started %d builds", len(jobs))
	}
}

// TestAnEvictedBuildIsRetriedWithoutAPerson: a pinned ref's build pod is
// evicted (backoffLimit 0 fails the Job at once): the build is retried
// after a back-off, counted on status, and its retry deploys.
func TestAnEvictedBuildIsRetriedWithoutAPerson(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app := h.newApp("shop")
	job := h.buildJob(app)
	h.g.Expect(kubelet.EvictJob(h.ctx, k8sClient, job)).To(Succeed())
	got := h.eventuallyCondition(app, herokunixv1.ConditionReconciling, metav1.ConditionTrue, herokunixv1.ReasonBuildFailed)
	if b := got.Status.Build; b.TransientFailures != 1 || b.RetryTime == nil {
		t.Errorf("status.build %+v does not count the eviction or schedule its retry", b)
	}
	var retry *batchv1.Job
	h.g.Eventually(func(g Gomega) {
		retry = h.buildJob(app)
		g.Expect(retry.Name).NotTo(Equal(job.Name))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	h.completeJob(retry, h.pushImages(sortedProcesses(app)...))
	got = h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	if got.Status.Build.TransientFailures != 0 {
		t.Errorf("a build that got through still counts failures: %+v", got.Status.Build)
	}
}

// TestARepairedNixConfSecretReRunsAFailedBuild: a private flake's build
// fails with the forge refusing the token (the build's own failure: it
// stalls); fixing the token in the nix.conf Secret runs the build again,
// with no reconcile request.
func TestARepairedNixConfSecretReRunsAFailedBuild(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	nixConf := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "nix-conf", Namespace: h.ns},
		StringData: map[string]string{"nix.conf": "access-tokens = github.com=expired"}}
	h.g.Expect(k8sClient.Create(h.ctx, nixConf)).To(Succeed())
	app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Build.NixConfigSecretRef = &herokunixv1.SecretKeyRef{Name: "nix-conf", Key: "nix.conf"}
	})
	job := h.buildJob(app)
	h.failJob(job, "error: unable to download 'https://api.github.com/repos/acme/shop/tarball/0123': HTTP error 401")
	h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonBuildFailed)

	nixConf.StringData = map[string]string{"nix.conf": "access-tokens = github.com=fresh"}
	h.g.Expect(k8sClient.Update(h.ctx, nixConf)).To(Succeed())
	var rerun *batchv1.Job
	h.g.Eventually(func(g Gomega) {
		rerun = h.buildJob(app)
		g.Expect(rerun.Name).NotTo(Equal(job.Name))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	h.completeJob(rerun, h.pushImages(sortedProcesses(app)...))
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
}
