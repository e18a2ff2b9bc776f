package envtest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

// Build pod placement: bad values are refused by the CRD naming the field,
// good ones reach the build Job's pod.
func TestBuildPlacementIsValidatedAndReachesTheJob(t *testing.T) {
	ns := newNamespace(t)
	tooMany := map[string]string{}
	for i := range 33 {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	for i, tc := range []struct {
		name   string
		mutate func(*herokunixv1.BuildOptions)
		field  string
	}{
		{"priority class name that is not DNS-1123", func(b *herokunixv1.BuildOptions) { b.PriorityClassName = "Batch_Low" }, "spec.build.priorityClassName"},
		{"service account name that is not DNS-1123", func(b *herokunixv1.BuildOptions) { b.ServiceAccountName = "nix cache" }, "spec.build.serviceAccountName"},
		{"more than 32 node selector labels", func(b *herokunixv1.BuildOptions) { b.NodeSelector = tooMany }, "spec.build.nodeSelector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := validApp(ns)
			app.Name = fmt.Sprintf("placement-%d", i)
			tc.mutate(&app.Spec.Build)
			err := k8sClient.Create(context.Background(), app)
			if err == nil || !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("got %v, want a refusal naming %s", err, tc.field)
			}
		})
	}

	h := newHarness(t)
	h.createSecret()
	app := h.newApp("placed", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Build.NodeSelector = map[string]string{"herokunix.dev/builder": "true"}
		a.Spec.Build.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "nix", Effect: corev1.TaintEffectNoSchedule}}
		a.Spec.Build.PriorityClassName = "system-cluster-critical"
		a.Spec.Build.ServiceAccountName = "nix-cache"
	})
	pod := h.buildJob(app).Spec.Template.Spec
	if pod.NodeSelector["herokunix.dev/builder"] != "true" || len(pod.Tolerations) != 1 || pod.PriorityClassName != "system-cluster-critical" ||
		pod.ServiceAccountName != "nix-cache" || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("build pod placement: %+v %+v %q %q token %v", pod.NodeSelector, pod.Tolerations, pod.PriorityClassName, pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
}
