package envtest

import (
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
)

// TestARefreshBuildReadsHerokuOnce: a background refresh of a moving ref
// whose Job goes through the steps of a real one (its pod active, ready,
// then the Job complete with the same revision) costs one Heroku read in
// the interval: the look for drift of the pass that started it. The Job's
// events wake no pass before it ends, and the pass its end wakes does not
// look again.
func TestARefreshBuildReadsHerokuOnce(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, first := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.Flake = "github:acme/shop?ref=main" })
	h.stub.ResetCalls()

	h.requestReconcile(app) // a push webhook: starts the refresh
	refresh := h.buildJob(app)
	refresh.Status.Active = 1
	h.g.Expect(k8sClient.Status().Update(h.ctx, refresh)).To(Succeed())
	refresh.Status.Ready = ptr.To[int32](1)
	h.g.Expect(k8sClient.Status().Update(h.ctx, refresh)).To(Succeed())
	refresh.Status.Active, refresh.Status.Ready = 0, ptr.To[int32](0)
	h.completeJob(refresh, &artifact.Result{Revision: first.Revision, LockedFlake: first.LockedFlake, Unchanged: true})
	h.g.Eventually(func() *metav1.Time { return h.get(app).Status.Build.CompletionTime }).ShouldNot(BeNil())
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)

	var reads []string
	for _, c := range h.stub.Calls() {
		if c.Handler != "api" {
			continue
		}
		if c.IsWrite() {
			t.Errorf("an unchanged refresh wrote to Heroku: %s %s", c.Method, c.Path)
		}
		if c.Method == http.MethodGet && strings.HasSuffix(c.Path, "/releases") {
			reads = append(reads, c.Path)
		}
	}
	if len(reads) != 1 {
		t.Errorf("%d release-list reads during one refresh, want 1 (the request's look for drift): %v", len(reads), reads)
	}
}
