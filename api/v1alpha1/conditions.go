package v1alpha1

// Condition types. Ready summarises; Reconciling and Stalled follow kstatus
// (https://github.com/kubernetes-sigs/cli-utils/blob/master/pkg/kstatus/README.md);
// Built and Released report the two halves of a deploy; Serving says
// whether the web dynos of the release came up.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
	ConditionBuilt       = "Built"
	ConditionReleased    = "Released"
	ConditionServing     = "Serving"
)

// Condition reasons, CamelCase as metav1.Condition requires.
const (
	ReasonProgressing         = "Progressing"
	ReasonBuildRunning        = "BuildRunning"
	ReasonBuildSucceeded      = "BuildSucceeded"
	ReasonBuildFailed         = "BuildFailed"
	ReasonCredentialsNotFound = "CredentialsNotFound"
	ReasonStackNotContainer   = "StackNotContainer"
	// ReasonUnsupportedGeneration: the Heroku app is of a generation (Fir)
	// that takes no container images; no stack change can help.
	ReasonUnsupportedGeneration = "UnsupportedGeneration"
	ReasonAppNotFound           = "AppNotFound"
	ReasonUnauthorized          = "Unauthorized"
	ReasonRateLimited           = "RateLimited"
	ReasonHerokuUnavailable     = "HerokuUnavailable"
	ReasonReleasePending        = "ReleasePending"
	ReasonReleaseFailed         = "ReleaseFailed"
	ReasonReleasePhaseFailed    = "ReleasePhaseFailed"
	ReasonReleased              = "Released"
	ReasonDriftDetected         = "DriftDetected"
	ReasonAppConflict           = "AppConflict"
	ReasonSuspended             = "Suspended"
	ReasonDeleting              = "Deleting"
	// ReasonCredentialsInvalid: the key in the Secret cannot be a Heroku
	// API key as written (e.g. it ends with a newline).
	ReasonCredentialsInvalid = "CredentialsInvalid"
	// ReasonBuildPodRefused: the namespace's Pod Security level
	// (restricted) refuses the build pod, whose Nix runs as root.
	ReasonBuildPodRefused = "BuildPodRefused"
	// ReasonInternalError: the controller failed unexpectedly (a bug); the
	// pass is retried with back-off.
	ReasonInternalError = "InternalError"
	// ReasonReadForbidden: the manager's ServiceAccount may not read a
	// Secret or ConfigMap the spec names (an install whose RBAC was
	// narrowed); nothing is changed on Heroku until it may.
	ReasonReadForbidden = "ReadForbidden"
	// ReasonConfigSourceNotFound: a Secret, ConfigMap or key that
	// spec.config reads is missing; nothing is changed on Heroku.
	ReasonConfigSourceNotFound = "ConfigSourceNotFound"
	// ReasonConfigInvalid: the config vars cannot be set as they are
	// (over Heroku's 32 kB of config, or refused by Heroku).
	ReasonConfigInvalid = "ConfigInvalid"
	// ReasonPromotionSourceNotFound: spec.promoteFrom names no HerokuNixApp
	// of the namespace, or one that cannot be promoted from (it is itself
	// promoting to this app, or deploys the same Heroku app).
	ReasonPromotionSourceNotFound = "PromotionSourceNotFound"
	// ReasonPromotionSourceNotReady: the source is not Ready yet; the
	// promotion waits for it.
	ReasonPromotionSourceNotReady = "PromotionSourceNotReady"
	// ReasonPromotionAwaitingApproval: spec.promoteFrom.requireApproval
	// holds the promotion until the approval annotation names the
	// source's revision.
	ReasonPromotionAwaitingApproval = "PromotionAwaitingApproval"
	// ReasonPromoted: the images were copied from the promotion source
	// (the Built condition of a promoted resource).
	ReasonPromoted = "Promoted"
	// ReasonPromotionCopyFailed: copying the source's images into this
	// app's repositories failed; the running release is untouched.
	ReasonPromotionCopyFailed = "PromotionCopyFailed"
	// ReasonWaitingForDynos: the release succeeded and its web dynos are
	// still starting; they are looked at again shortly.
	ReasonWaitingForDynos = "WaitingForDynos"
	// ReasonDynosUp: the release's web dynos are up (Serving True).
	ReasonDynosUp = "DynosUp"
	// ReasonNoWebDynos: the spec runs no web dynos (no web process type,
	// or quantity 0), so none are looked at (Serving True).
	ReasonNoWebDynos = "NoWebDynos"
	// ReasonDynosCrashed: a web dyno of the release crashed (it exited, or
	// did not bind $PORT in time): the release runs but does not serve.
	ReasonDynosCrashed = "DynosCrashed"
	// ReasonDynosNotUp: the release's web dynos were not up after the
	// bounded number of looks.
	ReasonDynosNotUp = "DynosNotUp"
)

// ApprovePromotionAnnotation approves a promotion held by
// spec.promoteFrom.requireApproval: its value must be the source's
// revision (status.revision of the source).
const ApprovePromotionAnnotation = "herokunix.dev/approve-promotion"

// ReconcileRequestAnnotation asks for a reconcile now when its value changes
// (the same convention as Flux's reconcile.fluxcd.io/requestedAt).
const ReconcileRequestAnnotation = "herokunix.dev/reconcile-requested-at"

// Finalizer guards the deletion policy.
const Finalizer = "herokunix.dev/finalizer"
