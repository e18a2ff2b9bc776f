package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
)

const defaultDeletionGrace = 10 * time.Minute

// reconcileDeletion applies the deletion policy to a resource being
// deleted, then lets it go (removes the finalizer); an error keeps it. Retain leaves Heroku as it is; ScaleToZero
// scales every process type to zero. When that cannot be done (credentials
// gone, app gone, Heroku down) it retries for a bounded time, then lets go
// with a warning event instead of hanging the deletion forever.
func (r *HerokuNixAppReconciler) reconcileDeletion(ctx context.Context, p *pass) error {
	app := p.app
	if !controllerutil.ContainsFinalizer(app, herokunixv1.Finalizer) {
		return nil
	}
	owns, err := r.ownsHerokuApp(ctx, app)
	if err != nil {
		return err
	}
	if app.Spec.DeletionPolicy == herokunixv1.DeletionPolicyScaleToZero && !app.Spec.Suspend && owns {
		if err := r.scaleToZero(ctx, p); err != nil {
			if errors.Is(err, heroku.ErrNotFound) {
				r.event(app, corev1.EventTypeNormal, herokunixv1.ReasonDeleting, "Delete", "Heroku app %s is gone; nothing to scale", app.Spec.AppName)
			} else if waited := p.now.Sub(app.DeletionTimestamp.Time); waited < r.deletionGrace() {
				return &stepError{Reason: herokunixv1.ReasonDeleting, Err: fmt.Errorf("scaling to zero before deletion: %w", err),
					RetryAfter: min(30*time.Second, r.deletionGrace()-waited),
					Summary:    herokuError("scaling to zero before deletion", err).conditionMessage()}
			} else {
				r.event(app, corev1.EventTypeWarning, herokunixv1.ReasonDeleting, "Delete",
					"gave up scaling %s to zero after %s: %v; its dynos keep running", app.Spec.AppName, waited.Round(time.Second), err)
			}
		}
	}
	patch := client.MergeFrom(app.DeepCopy())
	controllerutil.RemoveFinalizer(app, herokunixv1.Finalizer)
	if err := client.IgnoreNotFound(r.Patch(ctx, app, patch)); err != nil {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	r.Heroku.Forget(app.UID)
	r.configMemo.forget(app.UID)
	return nil
}

// ownsHerokuApp says whether deleting app may scale its Heroku app: only
// when it owns it by the rule of reconcileConflict (herokuAppOwner: it has
// proof of a release there, and none has earlier proof), so deleting the
// second of two, or one that never deployed, does not stop the other's
// dynos.
func (r *HerokuNixAppReconciler) ownsHerokuApp(ctx context.Context, app *herokunixv1.HerokuNixApp) (bool, error) {
	if !hasAppProof(app) {
		return false, nil
	}
	var same herokunixv1.HerokuNixAppList
	if err := r.List(ctx, &same, client.MatchingFields{indexAppName: app.Spec.AppName}); err != nil {
		return false, fmt.Errorf("listing resources for app %s: %w", app.Spec.AppName, err)
	}
	owner := herokuAppOwner(same.Items, app.UID)
	return owner == nil || owner.UID == app.UID, nil
}

// scaleToZero sets every process type of the app to zero dynos.
func (r *HerokuNixAppReconciler) scaleToZero(ctx context.Context, p *pass) error {
	app := p.app
	if err := r.reconcileCredentials(ctx, p); err != nil {
		return err
	}
	hk := p.heroku
	current, err := hk.Formation(ctx, app.Spec.AppName)
	if err != nil {
		return err
	}
	updates := make([]heroku.Formation, 0, len(current))
	for _, f := range current {
		if f.Quantity != 0 {
			updates = append(updates, heroku.Formation{Type: f.Type, Quantity: 0})
		}
	}
	if err := hk.ScaleFormation(ctx, app.Spec.AppName, updates); err != nil {
		return err
	}
	r.event(app, corev1.EventTypeNormal, herokunixv1.ReasonDeleting, "Delete", "scaled every process type of %s to zero", app.Spec.AppName)
	return nil
}

func (r *HerokuNixAppReconciler) deletionGrace() time.Duration {
	if r.DeletionGracePeriod > 0 {
		return r.DeletionGracePeriod
	}
	return defaultDeletionGrace
}
