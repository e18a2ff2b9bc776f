package build

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

// TestBuildPodPlacement: each spec.build placement field reaches the build
// pod unchanged, leaves the rest of the pod as it was (the token stays
// unmounted, the same build runs), and unset fields keep the defaults.
func TestBuildPodPlacement(t *testing.T) {
	affinity := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}}},
		}}},
	}}
	tolerations := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "nix", Effect: corev1.TaintEffectNoSchedule}}
	cases := []struct {
		name  string
		set   func(*herokunixv1.BuildOptions)
		check func(corev1.PodSpec) bool
	}{
		{"no placement keeps the scheduler's defaults", func(*herokunixv1.BuildOptions) {}, func(p corev1.PodSpec) bool {
			return p.NodeSelector == nil && p.Tolerations == nil && p.Affinity == nil && p.PriorityClassName == "" && p.ServiceAccountName == ""
		}},
		{"a node selector reaches the pod", func(b *herokunixv1.BuildOptions) { b.NodeSelector = map[string]string{"herokunix.dev/builder": "true"} },
			func(p corev1.PodSpec) bool {
				return reflect.DeepEqual(p.NodeSelector, map[string]string{"herokunix.dev/builder": "true"})
			}},
		{"tolerations reach the pod", func(b *herokunixv1.BuildOptions) { b.Tolerations = tolerations },
			func(p corev1.PodSpec) bool { return reflect.DeepEqual(p.Tolerations, tolerations) }},
		{"an affinity reaches the pod", func(b *herokunixv1.BuildOptions) { b.Affinity = affinity },
			func(p corev1.PodSpec) bool { return reflect.DeepEqual(p.Affinity, affinity) }},
		{"a priority class reaches the pod", func(b *herokunixv1.BuildOptions) { b.PriorityClassName = "batch-low" },
			func(p corev1.PodSpec) bool { return p.PriorityClassName == "batch-low" }},
		{"a service account reaches the pod", func(b *herokunixv1.BuildOptions) { b.ServiceAccountName = "nix-cache-writer" },
			func(p corev1.PodSpec) bool { return p.ServiceAccountName == "nix-cache-writer" }},
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := DesiredFor(testApp(), now, false)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := testApp()
			tc.set(&app.Spec.Build)
			b := DesiredFor(app, now, false)
			if b.Name != base.Name {
				t.Errorf("placement changed the build: %s, want %s", b.Name, base.Name)
			}
			job, err := DesiredJob(app, b, JobImages{Tools: "tools:1", Nix: "nix:1", RegistryHost: "registry.heroku.com"})
			if err != nil {
				t.Fatal(err)
			}
			pod := job.Spec.Template.Spec
			if !tc.check(pod) {
				t.Errorf("pod placement: nodeSelector %v tolerations %v affinity %v priorityClassName %q serviceAccountName %q",
					pod.NodeSelector, pod.Tolerations, pod.Affinity, pod.PriorityClassName, pod.ServiceAccountName)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("the build pod mounts a service account token")
			}
		})
	}
}
