package controllers

import (
	"context"
	"strings"
	"testing"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
)

// TestARequestDuringARunningRefreshIsTakenUpByTheNextBuild: a reconcile
// request (a push webhook announcing a commit) that arrives while a refresh
// build runs is not handled by that build, which may have resolved the
// branch before the commit: it stays pending, the pass that sees the build
// end comes back soon, and the build it then starts takes the request up.
func TestARequestDuringARunningRefreshIsTakenUpByTheNextBuild(t *testing.T) {
	const requested = "2026-01-02T03:00:00Z"
	app := summaryApp(true)
	refresh := app.Status.Build.Job[:strings.LastIndexByte(app.Status.Build.Job, '-')] + "-0123456789"
	app.Status.Build.Job, app.Status.Build.CompletionTime = refresh, nil // a refresh started before the request
	app.Annotations = map[string]string{herokunixv1.ReconcileRequestAnnotation: requested}
	app.Finalizers = []string{herokunixv1.Finalizer}
	w := newFakeWorld(t, app)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}
	reconcile := func(state build.State) (ctrl.Result, *herokunixv1.HerokuNixApp) {
		t.Helper()
		w.build.state = state
		res, err := w.r.Reconcile(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res, w.get(t, app)
	}

	if _, got := reconcile(build.State{Phase: build.Running}); got.Status.LastHandledReconcileAt != "" {
		t.Fatalf("the request is recorded as handled by the refresh it found running")
	}
	rev := strings.Repeat("b", 40)
	res, got := reconcile(build.State{Phase: build.Succeeded, Result: &artifact.Result{Revision: rev, LockedFlake: "github:acme/shop/" + rev,
		Images: map[string]artifact.Image{"web": {ImageID: "sha256:" + strings.Repeat("c", 64), Digest: "sha256:" + strings.Repeat("d", 64)}}}})
	if got.Status.LastHandledReconcileAt != "" {
		t.Fatalf("the request is recorded as handled by a refresh that started before it")
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > requestRequeue {
		t.Errorf("requeue after %s once the refresh ended, want at most %s so the request is taken up soon", res.RequeueAfter, requestRequeue)
	}

	_, got = reconcile(build.State{Phase: build.Running, Started: true})
	if last := w.build.ensured[len(w.build.ensured)-1]; last == refresh {
		t.Errorf("builds ensured %v: no new build took the request up", w.build.ensured)
	}
	if got.Status.LastHandledReconcileAt != requested {
		t.Errorf("lastHandledReconcileAt %q, want the request recorded by the build it started", got.Status.LastHandledReconcileAt)
	}
}
