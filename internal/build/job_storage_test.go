package build

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestBuildPodDiskIsBounded: every emptyDir of the build pod has a size
// limit, and its containers ask for the disk they use, by default and
// under spec.build.resources (which decides the build container's).
func TestBuildPodDiskIsBounded(t *testing.T) {
	q := resource.MustParse
	cases := []struct {
		name      string
		resources *corev1.ResourceRequirements
		// want is the build container's ephemeral storage.
		wantRequest, wantLimit string
	}{
		{name: "defaults", wantRequest: "10Gi"},
		{name: "resources without ephemeral storage keep the default request",
			resources:   &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("2")}},
			wantRequest: "10Gi"},
		{name: "a requested amount wins",
			resources:   &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("40Gi")}},
			wantRequest: "40Gi"},
		{name: "a limit alone is left for Kubernetes to request",
			resources: &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("30Gi")}},
			wantLimit: "30Gi"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := testApp()
			app.Spec.Build.Resources = tc.resources
			var given *corev1.ResourceRequirements
			if tc.resources != nil {
				given = tc.resources.DeepCopy()
			}
			job, err := DesiredJob(app, DesiredFor(app, time.Now(), false), JobImages{Tools: "tools", Nix: "nix"})
			if err != nil {
				t.Fatal(err)
			}
			pod := job.Spec.Template.Spec
			for _, v := range pod.Volumes {
				if v.EmptyDir != nil && (v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.IsZero()) {
					t.Errorf("emptyDir %s has no sizeLimit", v.Name)
				}
			}
			for _, c := range append(pod.InitContainers, pod.Containers...) {
				if c.Name == containerTools {
					continue // copies one binary into a bounded emptyDir
				}
				got := c.Resources.Requests[corev1.ResourceEphemeralStorage]
				if lim, ok := c.Resources.Limits[corev1.ResourceEphemeralStorage]; ok && got.IsZero() {
					got = lim
				}
				if got.IsZero() {
					t.Errorf("container %s asks for no ephemeral storage", c.Name)
				}
				if c.Name != containerBuild {
					continue
				}
				req, lim := c.Resources.Requests[corev1.ResourceEphemeralStorage], c.Resources.Limits[corev1.ResourceEphemeralStorage]
				if tc.wantRequest != "" && req.Cmp(q(tc.wantRequest)) != 0 || tc.wantRequest == "" && !req.IsZero() {
					t.Errorf("build container requests %s ephemeral storage, want %q", req.String(), tc.wantRequest)
				}
				if tc.wantLimit != "" && lim.Cmp(q(tc.wantLimit)) != 0 || tc.wantLimit == "" && !lim.IsZero() {
					t.Errorf("build container limits ephemeral storage to %s, want %q", lim.String(), tc.wantLimit)
				}
			}
			if given != nil && !equalResources(*given, *app.Spec.Build.Resources) {
				t.Errorf("DesiredJob changed spec.build.resources: %v", app.Spec.Build.Resources)
			}
		})
	}
}

func equalResources(a, b corev1.ResourceRequirements) bool {
	return len(a.Requests) == len(b.Requests) && len(a.Limits) == len(b.Limits)
}
