package envtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/test/argocdlua"
)

const argoCustomizations = "../../config/argocd/resource_customizations/herokunix.dev/HerokuNixApp"

func argoScript(t *testing.T, path ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{argoCustomizations}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// live reads a resource as Argo CD does: unstructured, from the API server.
func (h *harness) live(app *herokunixv1.HerokuNixApp) *unstructured.Unstructured {
	h.t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: "herokunix.dev", Version: "v1alpha1", Kind: "HerokuNixApp"})
	h.g.Expect(k8sClient.Get(h.ctx, client.ObjectKeyFromObject(app), u)).To(Succeed())
	return u
}

// runAction runs an Argo CD action on the live resource and applies what
// it returns as Argo CD does for a custom resource: a JSON merge patch from
// the live object to the returned one.
func (h *harness) runAction(app *herokunixv1.HerokuNixApp, name string) {
	h.t.Helper()
	u := h.live(app)
	offered, err := argocdlua.Discover(argoScript(h.t, "actions", "discovery.lua"), u.Object)
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(offered).To(ContainElement(argocdlua.Action{Name: name, Disabled: false}), "action %s is not offered", name)
	out, err := argocdlua.Act(argoScript(h.t, "actions", name, "action.lua"), u.DeepCopy().Object)
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(k8sClient.Patch(h.ctx, &unstructured.Unstructured{Object: out}, client.MergeFrom(u))).To(Succeed())
}

// eventuallyHealth waits until health.lua reads the live resource as status.
func (h *harness) eventuallyHealth(app *herokunixv1.HerokuNixApp, status, message string) {
	h.t.Helper()
	script := argoScript(h.t, "health.lua")
	h.g.Eventually(func(g Gomega) {
		st, msg, err := argocdlua.Health(script, h.live(app).Object)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(st).To(Equal(status))
		g.Expect(msg).To(ContainSubstring(message))
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
}

// The health check and the actions on resources the controller really
// reconciles: each action changes the resource as Argo CD would apply it,
// and the controller and the health check follow.
func TestArgoCDHealthAndActionsOnALiveResource(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, _ := h.deployed("shop", func(a *herokunixv1.HerokuNixApp) { a.Spec.Flake = "github:acme/shop?ref=main" })
	h.eventuallyHealth(app, "Healthy", "release v")

	// reconcile: a request the controller handles with a refresh build.
	firstJob := app.Status.Build.Job
	h.runAction(app, "reconcile")
	cur := h.get(app)
	stamp := cur.Annotations[herokunixv1.ReconcileRequestAnnotation]
	if _, err := time.Parse(time.RFC3339, stamp); err != nil {
		t.Fatalf("reconcile set the annotation to %q", stamp)
	}
	refresh := h.buildJob(app)
	if refresh.Name == firstJob {
		t.Error("the reconcile action did not start a refresh")
	}
	h.completeJob(refresh, h.pushImages("web"))
	h.g.Eventually(func() string { return h.get(app).Status.LastHandledReconcileAt }).WithTimeout(30 * time.Second).Should(Equal(stamp))
	h.eventuallyHealth(app, "Healthy", "release v")

	// suspend: the controller stops; Argo CD shows Suspended and offers resume.
	h.runAction(app, "suspend")
	if !h.get(app).Spec.Suspend {
		t.Fatal("suspend did not set spec.suspend")
	}
	h.eventuallyHealth(app, "Suspended", "suspended")
	offered, err := argocdlua.Discover(argoScript(t, "actions", "discovery.lua"), h.live(app).Object)
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(offered).To(Equal([]argocdlua.Action{{Name: "reconcile", Disabled: true}, {Name: "resume"}, {Name: "suspend", Disabled: true}}))
	// Ready stays True while the release keeps running (kstatus Current).
	h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)

	// resume: back to reconciling, Healthy.
	h.runAction(app, "resume")
	if h.get(app).Spec.Suspend {
		t.Fatal("resume did not clear spec.suspend")
	}
	got := h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	h.eventuallyHealth(app, "Healthy", strings.TrimSpace(got.Status.Release.Name))
}
