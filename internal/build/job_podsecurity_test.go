package build

import (
	"context"
	"errors"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// TestARestrictedNamespaceRefusesTheBuildAtOnce: in a namespace that
// enforces the restricted Pod Security level, Ensure makes no Job (it would
// never get a pod) and says why; other levels get their Job.
func TestARestrictedNamespaceRefusesTheBuildAtOnce(t *testing.T) {
	scheme := testScheme(t)
	for _, tc := range []struct {
		level   string
		refused bool
	}{{"restricted", true}, {"baseline", false}, {"", false}} {
		t.Run("level "+tc.level, func(t *testing.T) {
			app := testApp()
			app.UID = "uid-shop"
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: app.Namespace}}
			if tc.level != "" {
				ns.Labels = map[string]string{PodSecurityEnforceLabel: tc.level}
			}
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ns).Build()
			j := &JobBuilder{Client: c, APIReader: c, Scheme: scheme, Images: JobImages{Tools: "tools", Nix: "nix"}}

			state, err := j.Ensure(context.Background(), app, DesiredFor(app, time.Now(), false), "")

			var refused *PodRefusedError
			if got := errors.As(err, &refused); got != tc.refused {
				t.Fatalf("refused %v (%+v, %v), want %v", got, state, err, tc.refused)
			}
			var jobs batchv1.JobList
			if err := c.List(context.Background(), &jobs); err != nil {
				t.Fatal(err)
			}
			if tc.refused == (len(jobs.Items) != 0) {
				t.Errorf("%d Jobs made", len(jobs.Items))
			}
		})
	}
}
