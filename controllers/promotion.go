package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/image"
)

// reconcileImages makes sure the images to release exist: built from
// spec.flake, or promoted from the HerokuNixApp spec.promoteFrom names.
func (r *HerokuNixAppReconciler) reconcileImages(ctx context.Context, p *pass) error {
	if p.app.Spec.PromoteFrom != nil {
		return r.reconcilePromotion(ctx, p)
	}
	return r.reconcileBuild(ctx, p)
}

// copyTimeout bounds the copy of one promotion's images. With
// cross-repository mounts it takes a few requests per image; a registry
// that makes it upload every blob takes longer.
const copyTimeout = 15 * time.Minute

// reconcilePromotion takes the images the source HerokuNixApp runs: once
// it is Ready, running the images it built (or promoted), and, with
// requireApproval, once the approval annotation names its revision, the
// images are copied into this app's repositories (no Nix build, no
// Platform API call) and recorded on status as the images to release, with
// their source and revision. The release step then releases them with
// docker-releases as it would built ones. Sets Built (reason Promoted).
// Waits (no requeue: the source is watched) while the source is not
// Ready; stalls when the source does not exist or deploys this Heroku app.
func (r *HerokuNixAppReconciler) reconcilePromotion(ctx context.Context, p *pass) error {
	app := p.app
	from := app.Spec.PromoteFrom
	var src herokunixv1.HerokuNixApp
	if err := r.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: from.Name}, &src); err != nil {
		if apierrors.IsNotFound(err) {
			return r.promotionStalled(app, "HerokuNixApp %s/%s (spec.promoteFrom) not found", app.Namespace, from.Name)
		}
		return fmt.Errorf("reading HerokuNixApp %s (spec.promoteFrom): %w", from.Name, err)
	}
	if src.UID == app.UID || src.Spec.AppName == app.Spec.AppName {
		return r.promotionStalled(app, "HerokuNixApp %s deploys Heroku app %s, which this resource deploys too: promote from a resource of another app", src.Name, src.Spec.AppName)
	}
	rev, ok := promotable(&src)
	if !ok {
		msg := fmt.Sprintf("waiting for HerokuNixApp %s to be Ready before promoting its images", src.Name)
		if app.Status.Promotion == nil {
			setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonPromotionSourceNotReady, msg)
		}
		if app.Status.Promotion != nil && app.Status.Promotion.Source == src.Name {
			// What was promoted before keeps running; it is not waited for.
			return nil
		}
		return &waiting{Reason: herokunixv1.ReasonPromotionSourceNotReady, Message: msg}
	}
	if promoted(app, &src, rev) {
		return nil
	}
	if from.RequireApproval && app.Annotations[herokunixv1.ApprovePromotionAnnotation] != rev {
		msg := fmt.Sprintf("promoting revision %s of %s waits for approval: set the annotation %s=%s",
			shortRev(rev), src.Name, herokunixv1.ApprovePromotionAnnotation, rev)
		setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonPromotionAwaitingApproval, msg)
		return &waiting{Reason: herokunixv1.ReasonPromotionAwaitingApproval, Message: msg}
	}
	srcKey, _, err := r.apiKey(ctx, &src)
	if err != nil {
		return fmt.Errorf("reading the API key of promotion source %s: %w", src.Name, err)
	}
	digests, ids := map[string]string{}, map[string]string{}
	for pt, img := range src.Status.Images {
		digests[pt], ids[pt] = img.Digest, img.ImageID
	}
	copyCtx, cancel := context.WithTimeout(ctx, copyTimeout)
	defer cancel()
	err = image.Copy(copyCtx, src.Spec.AppName, app.Spec.AppName, digests, ids, image.CopyOptions{
		RegistryHost: r.registryHost(), Insecure: r.InsecureRegistry,
		From: heroku.RegistryAuth(srcKey), To: heroku.RegistryAuth(p.apiKey),
	})
	if err != nil {
		return r.copyFailed(app, src.Name, err)
	}
	app.Status.Images = maps.Clone(src.Status.Images)
	app.Status.Revision, app.Status.ShortRevision, app.Status.LockedFlake = src.Status.Revision, src.Status.ShortRevision, src.Status.LockedFlake
	app.Status.Promotion = &herokunixv1.PromotionStatus{Source: src.Name, SourceApp: src.Spec.AppName, Revision: rev}
	setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionTrue, herokunixv1.ReasonPromoted, promotedMessage(app))
	r.event(app, corev1.EventTypeNormal, herokunixv1.ReasonPromoted, "Promote", "copied the images of %s (%s, Heroku app %s) into %s's repositories; no build",
		src.Name, shortRev(rev), src.Spec.AppName, app.Spec.AppName)
	return nil
}

// promotable says whether src may be promoted from, and its revision: it
// is Ready for its current spec and Heroku runs the images on its status
// (its own release carries them and succeeded).
func promotable(src *herokunixv1.HerokuNixApp) (string, bool) {
	ready := meta.FindStatusCondition(src.Status.Conditions, herokunixv1.ConditionReady)
	rel := src.Status.Release
	switch {
	case ready == nil || ready.Status != metav1.ConditionTrue || src.Status.ObservedGeneration != src.Generation:
		return "", false
	case rel == nil || rel.Status != heroku.ReleaseSucceeded || src.Status.ReleaseIntent != nil:
		return "", false
	case len(src.Status.Images) == 0 || !maps.Equal(rel.Images, builtImageIDs(src)):
		return "", false
	}
	rev := src.Status.Revision
	if rev == "" {
		rev = src.Status.LockedFlake
	}
	return rev, rev != ""
}

// promoted says whether status.images are already src's at rev.
func promoted(app, src *herokunixv1.HerokuNixApp, rev string) bool {
	pr := app.Status.Promotion
	return pr != nil && pr.Source == src.Name && pr.Revision == rev && maps.Equal(builtImageIDs(app), builtImageIDs(src))
}

func promotedMessage(app *herokunixv1.HerokuNixApp) string {
	pr := app.Status.Promotion
	return fmt.Sprintf("promoted %s from %s (Heroku app %s); no build", shortRev(pr.Revision), pr.Source, pr.SourceApp)
}

func (r *HerokuNixAppReconciler) promotionStalled(app *herokunixv1.HerokuNixApp, format string, args ...any) error {
	err := stalled(herokunixv1.ReasonPromotionSourceNotFound, format, args...)
	setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonPromotionSourceNotFound, err.Error())
	return err
}

// copyFailed reports a failed copy; the running release is untouched. A
// registry that refuses a key (401) stalls as Unauthorized; anything else
// is retried.
func (r *HerokuNixAppReconciler) copyFailed(app *herokunixv1.HerokuNixApp, src string, err error) error {
	err = fmt.Errorf("copying the images of %s; the running Heroku release is untouched: %w", src, err)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusUnauthorized {
		setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonUnauthorized, err.Error())
		return &stepError{Reason: herokunixv1.ReasonUnauthorized, Err: err, Stalling: true}
	}
	setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonPromotionCopyFailed, err.Error())
	return &stepError{Reason: herokunixv1.ReasonPromotionCopyFailed, Err: err, RetryAfter: time.Minute,
		Summary: "copying the images of " + src + " failed; retrying (the running Heroku release is untouched)"}
}

// shortRev is a revision as status.shortRevision and messages show it.
func shortRev(rev string) string { return rev[:min(12, len(rev))] }

func (r *HerokuNixAppReconciler) registryHost() string {
	if r.RegistryHost != "" {
		return r.RegistryHost
	}
	return heroku.DefaultRegistryHost
}
