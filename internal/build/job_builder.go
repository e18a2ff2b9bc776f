package build

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
)

// JobBuilder runs each build as a Kubernetes Job (the default builder).
// The Heroku key reaches the Job through a secretKeyRef, never as a value.
type JobBuilder struct {
	Client client.Client
	// APIReader lists a finished Job's pods from the API server, not a
	// cache that may lag the Job.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Images    JobImages
}

var _ Builder = (*JobBuilder)(nil)

// NewJobBuilder runs builds as Jobs through mgr's client, reading their
// pods through its uncached reader.
func NewJobBuilder(mgr ctrl.Manager, images JobImages) *JobBuilder {
	return &JobBuilder{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(), Images: images}
}

// Ensure creates the build's Job if it does not exist and reads its outcome.
func (j *JobBuilder) Ensure(ctx context.Context, app *herokunixv1.HerokuNixApp, b Desired, _ string) (State, error) {
	var job batchv1.Job
	err := j.Client.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: b.Name}, &job)
	if apierrors.IsNotFound(err) {
		if err := j.checkPodSecurity(ctx, app.Namespace); err != nil {
			return State{}, err
		}
		desired, err := DesiredJob(app, b, j.Images)
		if err != nil {
			return State{}, err
		}
		if err := controllerutil.SetControllerReference(app, desired, j.Scheme); err != nil {
			return State{}, fmt.Errorf("owning build job: %w", err)
		}
		if err := j.Client.Create(ctx, desired); err != nil && !apierrors.IsAlreadyExists(err) {
			return State{}, fmt.Errorf("creating build job %s: %w", b.Name, err)
		}
		return State{Phase: Running, Started: true}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading build job %s: %w", b.Name, err)
	}
	if !metav1.IsControlledBy(&job, app) {
		// Its images went to another app: never follow it.
		return State{}, fmt.Errorf("build job %s/%s is not this resource's (its controller is not UID %s)", job.Namespace, job.Name, app.UID)
	}
	switch {
	case jobHasCondition(&job, batchv1.JobComplete):
		msg, err := j.terminationMessage(ctx, &job, containerPush)
		if errors.Is(err, errNoMessage) {
			// The pod is gone (evicted, collected): the result is lost.
			return State{Phase: Failed, Message: err.Error()}, nil
		}
		if err != nil {
			return State{}, err
		}
		res, err := artifact.ParseResult([]byte(msg))
		if err != nil {
			return State{Phase: Failed, Message: fmt.Sprintf("the push container's result is unreadable: %v", err)}, nil
		}
		return State{Phase: Succeeded, Result: res}, nil
	case jobHasCondition(&job, batchv1.JobFailed):
		return j.failedState(ctx, &job), nil
	}
	return State{Phase: Running}, nil
}

// PodSecurityEnforceLabel is the namespace label that sets the Pod Security
// level its pods must meet.
const PodSecurityEnforceLabel = "pod-security.kubernetes.io/enforce"

// PodRefusedError is a namespace whose Pod Security level refuses the
// build pod. The Job would be made but never get a pod (its controller
// records FailedCreate events only) until its deadline passes, so the
// build is not started.
type PodRefusedError struct {
	Namespace, Level string
}

func (e *PodRefusedError) Error() string {
	return fmt.Sprintf("namespace %s enforces the %q Pod Security level (label %s), which refuses the build pod: "+
		"Nix runs as root in its build container. Put the HerokuNixApp in a namespace that enforces \"baseline\" "+
		"(kubectl label namespace %s %s=baseline --overwrite, if its other pods allow it)",
		e.Namespace, e.Level, PodSecurityEnforceLabel, e.Namespace, PodSecurityEnforceLabel)
}

// checkPodSecurity returns a PodRefusedError when namespace enforces the
// restricted level. The namespace is read from the API server, once per
// build started, so the manager caches (and watches) no namespaces. A
// level set cluster-wide (AdmissionConfiguration defaults) is not seen.
func (j *JobBuilder) checkPodSecurity(ctx context.Context, namespace string) error {
	var ns corev1.Namespace
	err := j.APIReader.Get(ctx, client.ObjectKey{Name: namespace}, &ns)
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		// Creating the Job says what is wrong with a missing namespace,
		// and a manager not allowed to read namespaces still builds.
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading namespace %s for its Pod Security level: %w", namespace, err)
	}
	if level := ns.Labels[PodSecurityEnforceLabel]; level == "restricted" {
		return &PodRefusedError{Namespace: namespace, Level: level}
	}
	return nil
}

// PollInterval is a safety net: Job changes are watched, so this is long.
func (j *JobBuilder) PollInterval() time.Duration { return 2 * time.Minute }

// FinishedJobsKept is how many finished build Jobs a resource keeps (the
// current one among them): enough to read why the last few builds failed
// or what they pushed, with their pods' logs, without one Job per refresh
// interval piling up.
const FinishedJobsKept = 3

// CancelOthers deletes the app's running build Jobs other than keep (and
// their pods), and its finished ones beyond the FinishedJobsKept newest.
func (j *JobBuilder) CancelOthers(ctx context.Context, app *herokunixv1.HerokuNixApp, keep string) error {
	var jobs batchv1.JobList
	if err := j.Client.List(ctx, &jobs, client.InNamespace(app.Namespace), client.MatchingLabels{LabelApp: app.Name, LabelManagedBy: managedBy}); err != nil {
		return fmt.Errorf("listing build jobs: %w", err)
	}
	for _, job := range jobsToDelete(app, jobs.Items, keep) {
		if err := j.Client.Delete(ctx, job, client.PropagationPolicy("Background")); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting build job %s: %w", job.Name, err)
		}
	}
	return nil
}

// jobsToDelete are the Jobs of app (by label) that are neither keep nor
// among its FinishedJobsKept newest finished ones. Finished Jobs are only
// deleted when app controls them, as the label alone is a name.
func jobsToDelete(app *herokunixv1.HerokuNixApp, jobs []batchv1.Job, keep string) []*batchv1.Job {
	var del, finished []*batchv1.Job
	for i := range jobs {
		job := &jobs[i]
		switch {
		case job.Name == keep:
		case !jobFinished(job):
			del = append(del, job)
		case metav1.IsControlledBy(job, app):
			finished = append(finished, job)
		}
	}
	// Newest first; the kept build, if finished, takes one of the places.
	sort.SliceStable(finished, func(a, b int) bool {
		return finishedAt(finished[b]).Before(finishedAt(finished[a]))
	})
	room := FinishedJobsKept
	if i := slices.IndexFunc(jobs, func(j batchv1.Job) bool { return j.Name == keep }); i >= 0 && jobFinished(&jobs[i]) {
		room--
	}
	if len(finished) > room {
		del = append(del, finished[room:]...)
	}
	return del
}

func jobFinished(job *batchv1.Job) bool {
	return jobHasCondition(job, batchv1.JobComplete) || jobHasCondition(job, batchv1.JobFailed)
}

// finishedAt is when a finished Job finished: its completion time, else
// (a failed Job has none) its Complete or Failed condition's, else when
// it was made.
func finishedAt(job *batchv1.Job) time.Time {
	if job.Status.CompletionTime != nil {
		return job.Status.CompletionTime.Time
	}
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time
		}
	}
	return job.CreationTimestamp.Time
}

var errNoMessage = errors.New("no termination message")

func jobHasCondition(job *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// jobPods lists the pods a Job made.
func (j *JobBuilder) jobPods(ctx context.Context, job *batchv1.Job) ([]corev1.Pod, error) {
	var pods corev1.PodList
	// By the Job's UID: a pod left from an earlier Job of the same name
	// must not answer for this one.
	if err := j.APIReader.List(ctx, &pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.ControllerUidLabel: string(job.UID)}); err != nil {
		return nil, fmt.Errorf("listing pods of build job %s: %w", job.Name, err)
	}
	return pods.Items, nil
}

// terminationMessage returns what a container of the Job's pod wrote to its
// termination message.
func (j *JobBuilder) terminationMessage(ctx context.Context, job *batchv1.Job, container string) (string, error) {
	pods, err := j.jobPods(ctx, job)
	if err != nil {
		return "", err
	}
	for _, pod := range pods {
		for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
			if cs.Name == container && cs.State.Terminated != nil {
				return cs.State.Terminated.Message, nil
			}
		}
	}
	return "", fmt.Errorf("build job %s completed but its %s container's result is gone: %w", job.Name, container, errNoMessage)
}

// failedState is what a failed Job says: a credentials failure when its
// push container wrote one (artifact.Failure; only the push container's
// word counts, as the build container runs user code), else a failed build
// explained by failureMessage.
func (j *JobBuilder) failedState(ctx context.Context, job *batchv1.Job) State {
	if pods, err := j.jobPods(ctx, job); err == nil {
		for _, pod := range pods {
			for _, cs := range pod.Status.ContainerStatuses {
				if t := cs.State.Terminated; cs.Name == containerPush && t != nil && t.ExitCode != 0 {
					if f := artifact.ParseFailure([]byte(t.Message)); f != nil {
						return State{Phase: Failed, Failure: f.Failure, Message: fmt.Sprintf("%s container: %s", containerPush, f.Message)}
					}
				}
			}
		}
	}
	return State{Phase: Failed, Message: j.failureMessage(ctx, job)}
}

// failureMessage explains a failed Job: the failing container's last log
// lines (its termination message falls back to the log on error), else the
// Job's own reason (e.g. DeadlineExceeded).
func (j *JobBuilder) failureMessage(ctx context.Context, job *batchv1.Job) string {
	if pods, err := j.jobPods(ctx, job); err == nil {
		for _, pod := range pods {
			for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
				if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
					// The kubelet's word on why, when it is the memory limit:
					// Nix itself often exits 1 after its builder was killed.
					if t.Reason == "OOMKilled" {
						return fmt.Sprintf("%s container ran out of memory (OOMKilled: raise spec.build.resources.limits.memory) and exited %d: %s",
							cs.Name, t.ExitCode, strings.TrimSpace(t.Message))
					}
					return fmt.Sprintf("%s container exited %d: %s", cs.Name, t.ExitCode, strings.TrimSpace(t.Message))
				}
			}
		}
	}
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed {
			return fmt.Sprintf("build job failed: %s: %s", c.Reason, c.Message)
		}
	}
	return "build job failed"
}
