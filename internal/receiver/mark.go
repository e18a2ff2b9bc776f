package receiver

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/herokunix/herokunix/internal/flakeref"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

// Following returns the resources a push can change what they build: those
// whose spec.flake follows the pushed branch of the pushed repository. A
// suspended resource or one being deleted is left alone.
func Following(apps []herokunixv1.HerokuNixApp, p Push) []*herokunixv1.HerokuNixApp {
	var out []*herokunixv1.HerokuNixApp
	for i := range apps {
		a := &apps[i]
		if a.Spec.Suspend || a.DeletionTimestamp != nil {
			continue
		}
		src, ok := flakeref.Parse(a.Spec.Flake)
		if ok && src.Key() == p.Key() && src.Follows(p.Branch, p.DefaultBranch) {
			out = append(out, a)
		}
	}
	return out
}

// markReconcile sets the reconcile-now annotation to value, as
// `kubectl annotate` would: the controller then re-resolves the flake
// reference, and builds only if its revision moved. A merge patch of the
// annotation alone needs no read-modify-write.
func markReconcile(ctx context.Context, c client.Writer, app *herokunixv1.HerokuNixApp, value string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{herokunixv1.ReconcileRequestAnnotation: value},
	}})
	if err != nil {
		return err
	}
	err = c.Patch(ctx, app, client.RawPatch(types.MergePatchType, patch))
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile: nothing to rebuild
	}
	if err != nil {
		return fmt.Errorf("requesting a reconcile of %s/%s: %w", app.Namespace, app.Name, err)
	}
	return nil
}
