package controllers

import (
	"context"
	"slices"
	"testing"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
)

// TestAFailedBuildIsEventedOnce runs two passes over a new resource (its
// build starts, then fails) and checks the events: one per fact.
func TestAFailedBuildIsEventedOnce(t *testing.T) {
	app := summaryApp(false)
	w := newFakeWorld(t, app)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}

	w.build.state = build.State{Phase: build.Running, Started: true}
	if _, err := w.r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	w.build.state = build.State{Phase: build.Failed, Message: "error: attribute 'web' missing"}
	if _, err := w.r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}

	want := []string{"Normal " + herokunixv1.ReasonBuildRunning, "Warning " + herokunixv1.ReasonBuildFailed}
	if got := w.events.reasons(); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", w.events.events, want)
	}
	var got herokunixv1.HerokuNixApp
	if err := w.c.Get(context.Background(), req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	if c := condition(&got, herokunixv1.ConditionStalled); c != "True "+herokunixv1.ReasonBuildFailed {
		t.Errorf("Stalled = %q after a failed build", c)
	}
}
