package controllers

import (
	"context"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
)

// Field indexes.
const (
	indexAppName = "spec.appName"
	// indexSecretName indexes the Secrets a resource reads (secretsRead).
	indexSecretName = "spec.credentialsSecretRef.name"
	// indexConfigSecret and indexConfigMap: the Secrets and ConfigMaps
	// spec.config reads.
	indexConfigSecret = "spec.config.secretKeyRef.name"
	indexConfigMap    = "spec.config.configMapKeyRef.name"
	indexPromoteFrom  = "spec.promoteFrom.name"
)

// The manager's metrics endpoint asks the API server who a caller is and
// whether it may get /metrics (controller-runtime's
// filters.WithAuthenticationAndAuthorization, cmd/manager).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// CacheOptions keep the manager's cache to what the controller needs: of
// all Pods, only those of build Jobs; no object's managedFields (often the
// larger part of a small object, and never read); and of Secrets no data.
// Secrets are watched for metadata only and their keys read from the API
// server when needed, so a Secret's data in the cache could only come
// from a mistake, which would then hold every Heroku key of the cluster
// in memory: the Secret transform drops it even then.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:    {Label: build.ManagedSelector()},
			&batchv1.Job{}:   {Label: build.ManagedSelector()},
			&corev1.Secret{}: {Transform: stripSecret},
		},
	}
}

// stripSecret keeps of a cached Secret (or its metadata) what the cache
// needs: no data and no managedFields. A ByObject transform replaces the
// default one, so it strips managedFields itself.
func stripSecret(in any) (any, error) {
	if s, ok := in.(*corev1.Secret); ok {
		s.Data, s.StringData = nil, nil
	}
	return cache.TransformStripManagedFields()(in)
}

// Options tune the controller.
type Options struct {
	MaxConcurrentReconciles int
	// BuildEvents, when set, carries "a build of this resource finished"
	// from an in-process builder.
	BuildEvents <-chan event.TypedGenericEvent[*herokunixv1.HerokuNixApp]
}

// SetupWithManager registers the reconciler, its indexes and its watches.
func (r *HerokuNixAppReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &herokunixv1.HerokuNixApp{}, indexAppName, func(o client.Object) []string {
		return []string{o.(*herokunixv1.HerokuNixApp).Spec.AppName}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &herokunixv1.HerokuNixApp{}, indexSecretName, secretsRead); err != nil {
		return err
	}

	for field, kind := range map[string]string{indexConfigSecret: "Secret", indexConfigMap: "ConfigMap"} {
		if err := idx.IndexField(ctx, &herokunixv1.HerokuNixApp{}, field, func(o client.Object) []string {
			var names []string
			for _, ref := range configRefs(o.(*herokunixv1.HerokuNixApp)) {
				if ref.Kind == kind {
					names = append(names, ref.Name)
				}
			}
			return names
		}); err != nil {
			return err
		}
	}
	if err := idx.IndexField(ctx, &herokunixv1.HerokuNixApp{}, indexPromoteFrom, func(o client.Object) []string {
		if from := o.(*herokunixv1.HerokuNixApp).Spec.PromoteFrom; from != nil {
			return []string{from.Name}
		}
		return nil
	}); err != nil {
		return err
	}

	b := ctrl.NewControllerManagedBy(mgr).
		For(&herokunixv1.HerokuNixApp{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// A build Job wakes a pass when it ends, not at each step of its
		// pod's life: every pass may read Heroku.
		Owns(&batchv1.Job{}, builder.WithPredicates(buildJobEvents)).
		// Only Secrets' metadata is cached: the key itself is read when
		// needed, so the controller does not hold every Secret in memory.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.appsUsingSecret), builder.OnlyMetadata).
		// Likewise ConfigMaps that spec.config reads: their values are read
		// from the API server when their version changed.
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.appsUsingConfigMap), builder.OnlyMetadata).
		// A promotion source that changes (a new revision Ready) is
		// promoted at once.
		Watches(&herokunixv1.HerokuNixApp{}, handler.EnqueueRequestsFromMapFunc(r.appsPromotingFrom),
			builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		// A deleted or renamed owner of a Heroku app frees it for the next.
		Watches(&herokunixv1.HerokuNixApp{}, handler.EnqueueRequestsFromMapFunc(r.appsSharingHerokuApp),
			builder.WithPredicates(predicate.Funcs{
				CreateFunc:  func(event.CreateEvent) bool { return false },
				UpdateFunc:  func(e event.UpdateEvent) bool { return e.ObjectNew.GetDeletionTimestamp() != nil },
				DeleteFunc:  func(event.DeleteEvent) bool { return true },
				GenericFunc: func(event.GenericEvent) bool { return false },
			})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, opts.MaxConcurrentReconciles)})
	if opts.BuildEvents != nil {
		b = b.WatchesRawSource(source.Channel(opts.BuildEvents, &handler.TypedEnqueueRequestForObject[*herokunixv1.HerokuNixApp]{}))
	}
	return b.Complete(r)
}

// buildJobEvents passes on the build Job events jobEventMatters keeps.
var buildJobEvents = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return jobEventMatters(nil, asJob(e.Object)) },
	UpdateFunc: func(e event.UpdateEvent) bool { return jobEventMatters(asJob(e.ObjectOld), asJob(e.ObjectNew)) },
	DeleteFunc: func(e event.DeleteEvent) bool { return jobEventMatters(asJob(e.Object), nil) },
	// Nothing sends generic Job events; one would be asked for on purpose.
	GenericFunc: func(event.GenericEvent) bool { return true },
}

func asJob(o client.Object) *batchv1.Job {
	job, _ := o.(*batchv1.Job)
	return job
}

// jobEventMatters says whether a change of a build Job (before nil: it
// appeared; after nil: it was deleted) can change what a pass makes of the
// build. Only its end can: the Complete or Failed condition, set once its
// pod ended and its result (the push container's termination message) is
// there to read. Also a Job deleted before it ended (its build never
// will) and, when the cache lists Jobs after a restart, one found ended.
// Its pod starting, becoming ready, its counts, labels or finalizers
// changing do not: a pass would find the build still running, and each
// pass may read Heroku. A Job the controller just made is followed by the
// pass that made it.
func jobEventMatters(before, after *batchv1.Job) bool {
	switch {
	case after == nil:
		return before != nil && !jobEnded(before)
	case before == nil:
		return jobEnded(after)
	}
	return jobEnded(after) && !jobEnded(before)
}

// jobEnded says whether a Job has its Complete or Failed condition.
func jobEnded(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// secretsRead are the names of the Secrets a resource reads: its
// credentials, and its build's nix.conf (a change of which re-runs a
// failed build).
func secretsRead(o client.Object) []string {
	app := o.(*herokunixv1.HerokuNixApp)
	names := []string{app.Spec.CredentialsSecretRef.Name}
	if ref := app.Spec.Build.NixConfigSecretRef; ref != nil && ref.Name != names[0] {
		names = append(names, ref.Name)
	}
	return names
}

// appsUsingSecret maps a Secret to the resources whose credentials or
// config vars it holds.
func (r *HerokuNixAppReconciler) appsUsingSecret(ctx context.Context, o client.Object) []reconcile.Request {
	return r.appsMatching(ctx, o.GetNamespace(), o.GetName(), indexSecretName, indexConfigSecret)
}

// appsUsingConfigMap maps a ConfigMap to the resources whose config vars
// it holds.
func (r *HerokuNixAppReconciler) appsUsingConfigMap(ctx context.Context, o client.Object) []reconcile.Request {
	return r.appsMatching(ctx, o.GetNamespace(), o.GetName(), indexConfigMap)
}

// appsPromotingFrom maps a resource to those promoting its images.
func (r *HerokuNixAppReconciler) appsPromotingFrom(ctx context.Context, o client.Object) []reconcile.Request {
	return r.appsMatching(ctx, o.GetNamespace(), o.GetName(), indexPromoteFrom)
}

// appsMatching lists the resources of namespace whose index field is
// value, for any of the fields, each once.
func (r *HerokuNixAppReconciler) appsMatching(ctx context.Context, namespace, value string, fields ...string) []reconcile.Request {
	var out []reconcile.Request
	seen := map[types.NamespacedName]bool{}
	for _, field := range fields {
		var apps herokunixv1.HerokuNixAppList
		if err := r.List(ctx, &apps, client.InNamespace(namespace), client.MatchingFields{field: value}); err != nil {
			continue
		}
		for _, req := range requestsFor(apps.Items, "") {
			if !seen[req.NamespacedName] {
				seen[req.NamespacedName] = true
				out = append(out, req)
			}
		}
	}
	return out
}

// appsSharingHerokuApp maps a resource to the others naming its Heroku app.
func (r *HerokuNixAppReconciler) appsSharingHerokuApp(ctx context.Context, o client.Object) []reconcile.Request {
	var apps herokunixv1.HerokuNixAppList
	if err := r.List(ctx, &apps, client.MatchingFields{indexAppName: o.(*herokunixv1.HerokuNixApp).Spec.AppName}); err != nil {
		return nil
	}
	return requestsFor(apps.Items, string(o.GetUID()))
}

func requestsFor(apps []herokunixv1.HerokuNixApp, skipUID string) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(apps))
	for _, a := range apps {
		if string(a.UID) != skipUID {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&a)})
		}
	}
	return reqs
}
