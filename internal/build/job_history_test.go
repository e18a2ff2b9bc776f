package build

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

// TestBuildJobHistoryIsCounted: a resource keeps its FinishedJobsKept
// newest finished build Jobs (the current build among them once it is
// finished), however many refresh intervals made more, and never deletes a
// finished Job it does not control; running Jobs other than the current
// one are cancelled.
func TestBuildJobHistoryIsCounted(t *testing.T) {
	scheme := testScheme(t)
	app := testApp()
	app.UID = types.UID("uid-shop")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	job := func(name string, owner *herokunixv1.HerokuNixApp, finished int, failed bool) *batchv1.Job {
		j, err := DesiredJob(app, DesiredFor(app, base, false), JobImages{Tools: "tools", Nix: "nix"})
		if err != nil {
			t.Fatal(err)
		}
		j.Name = name
		// Made in the reverse order of finishing: the order is by when
		// they finished.
		j.CreationTimestamp = metav1.Time{Time: base.Add(-time.Duration(finished) * time.Hour)}
		if err := controllerutil.SetControllerReference(owner, j, scheme); err != nil {
			t.Fatal(err)
		}
		at := metav1.Time{Time: base.Add(time.Duration(finished) * time.Hour)}
		switch {
		case finished == 0:
		case failed: // a failed Job has no completion time
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: at}}
		default:
			j.Status.CompletionTime = &at
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: at}}
		}
		return j
	}
	previous := app.DeepCopy()
	previous.UID = "uid-shop-before"

	cases := []struct {
		name string
		jobs []*batchv1.Job
		keep string
		want []string
	}{
		{
			name: "a running build keeps three finished ones",
			jobs: []*batchv1.Job{
				job("current", app, 0, false), job("stale-running", app, 0, false),
				job("done-1", app, 1, false), job("failed-2", app, 2, true), job("done-3", app, 3, false),
				job("done-4", app, 4, false), job("failed-5", app, 5, true),
				job("before", previous, 1, false),
			},
			keep: "current",
			want: []string{"before", "current", "done-3", "done-4", "failed-5"},
		},
		{
			name: "a finished build is one of the three",
			jobs: []*batchv1.Job{
				job("current", app, 9, false), job("done-1", app, 1, false), job("done-3", app, 3, false), job("failed-5", app, 5, true),
			},
			keep: "current",
			want: []string{"current", "done-3", "failed-5"},
		},
		{
			name: "a finished build older than the rest is still kept",
			jobs: []*batchv1.Job{
				job("current", app, 1, true), job("done-3", app, 3, false), job("done-4", app, 4, false), job("failed-5", app, 5, true),
			},
			keep: "current",
			want: []string{"current", "done-4", "failed-5"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := make([]client.Object, len(tc.jobs))
			for i, j := range tc.jobs {
				objs[i] = j
			}
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&batchv1.Job{}).Build()
			j := &JobBuilder{Client: c, APIReader: c, Scheme: scheme}

			if err := j.CancelOthers(context.Background(), app, tc.keep); err != nil {
				t.Fatal(err)
			}

			var left batchv1.JobList
			if err := c.List(context.Background(), &left); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, j := range left.Items {
				names = append(names, j.Name)
			}
			slices.Sort(names)
			if fmt.Sprint(names) != fmt.Sprint(tc.want) {
				t.Errorf("left %v, want %v", names, tc.want)
			}
		})
	}
}

func TestBuildJobsHaveNoTTL(t *testing.T) {
	app := testApp()
	j, err := DesiredJob(app, DesiredFor(app, time.Now(), false), JobImages{Tools: "tools", Nix: "nix"})
	if err != nil {
		t.Fatal(err)
	}
	if j.Spec.TTLSecondsAfterFinished != nil {
		t.Errorf("build Jobs expire after %ds: the history is kept by count (FinishedJobsKept), not by time", *j.Spec.TTLSecondsAfterFinished)
	}
}
