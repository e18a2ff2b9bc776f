// Package kubelet plays the kubelet and the Job controller for tests and
// benchmarks that run against an API server with neither: it finishes a
// build Job the way they would, with a pod whose containers terminated
// with the given messages.
package kubelet

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herokunix/herokunix/internal/artifact"
)

// CompleteJob ends job successfully: its push container wrote res to its
// termination message.
func CompleteJob(ctx context.Context, c client.Client, job *batchv1.Job, res *artifact.Result) error {
	msg, err := res.Encode()
	if err != nil {
		return err
	}
	return finish(ctx, c, job, true, corev1.ContainerStatus{Name: "push",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: string(msg)}}})
}

// FailJob ends job with its build container failed; log stands for the
// end of its log (a termination message falls back to it on error).
func FailJob(ctx context.Context, c client.Client, job *batchv1.Job, log string) error {
	return finish(ctx, c, job, false, corev1.ContainerStatus{Name: "build",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: log}}})
}

// FailPush ends job with its push container failed after writing msg to
// its termination message (an artifact.Failure, or the log tail a
// termination message falls back to).
func FailPush(ctx context.Context, c client.Client, job *batchv1.Job, msg string) error {
	return finish(ctx, c, job, false, corev1.ContainerStatus{Name: "push",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: msg}}})
}

// EvictJob ends job the way a node-pressure eviction does to a Job with
// backoffLimit 0: its pod failed with the kubelet's Evicted reason and a
// DisruptionTarget condition, its build container killed, and the Job
// failed.
func EvictJob(ctx context.Context, c client.Client, job *batchv1.Job) error {
	evicted := func(pod *corev1.Pod) {
		pod.Status.Reason, pod.Status.Message = "Evicted", "The node was low on resource: ephemeral-storage."
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
			Status: corev1.ConditionTrue, Reason: "TerminationByKubelet", LastTransitionTime: metav1.Now()})
	}
	return finishWith(ctx, c, job, corev1.ContainerStatus{Name: "build",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error"}}}, evicted, "BackoffLimitExceeded")
}

// ExpireJob ends job as its activeDeadlineSeconds does: the Job failed
// with DeadlineExceeded, and its pod is gone.
func ExpireJob(ctx context.Context, c client.Client, job *batchv1.Job) error {
	now := metav1.Now()
	job.Status.StartTime, job.Status.Failed = &now, 1
	job.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, LastTransitionTime: now, Reason: batchv1.JobReasonDeadlineExceeded},
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: now, Reason: batchv1.JobReasonDeadlineExceeded,
			Message: "Job was active longer than specified deadline"},
	}
	if err := c.Status().Update(ctx, job); err != nil {
		return fmt.Errorf("ending the build job: %w", err)
	}
	return nil
}

func finish(ctx context.Context, c client.Client, job *batchv1.Job, ok bool, cs corev1.ContainerStatus) error {
	if !ok {
		return finishWith(ctx, c, job, cs, nil, "BackoffLimitExceeded")
	}
	return finishWith(ctx, c, job, cs, nil, "")
}

// finishWith ends job with a pod whose container ended as cs, changed by
// pod when set; a failure reason fails the Job with it, "" completes it.
func finishWith(ctx context.Context, c client.Client, job *batchv1.Job, cs corev1.ContainerStatus, podChange func(*corev1.Pod), failure string) error {
	ok := failure == ""
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-pod", Namespace: job.Namespace, Labels: podLabels(job)},
		Spec:       job.Spec.Template.Spec,
	}
	if err := c.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating the build pod: %w", err)
	}
	pod.Status.Phase = corev1.PodSucceeded
	if !ok {
		pod.Status.Phase = corev1.PodFailed
	}
	if cs.Name == "push" {
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
	} else {
		pod.Status.InitContainerStatuses = []corev1.ContainerStatus{cs}
	}
	if podChange != nil {
		podChange(pod)
	}
	if err := c.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("ending the build pod: %w", err)
	}

	// The Job status rules (Kubernetes 1.31+) want SuccessCriteriaMet or
	// FailureTarget before Complete or Failed.
	now := metav1.Now()
	job.Status.StartTime = &now
	if ok {
		job.Status.Succeeded, job.Status.CompletionTime = 1, &now
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
	} else {
		job.Status.Failed = 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, LastTransitionTime: now, Reason: failure},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: now, Reason: failure, Message: "Job has reached the specified backoff limit"},
		}
	}
	if err := c.Status().Update(ctx, job); err != nil {
		return fmt.Errorf("ending the build job: %w", err)
	}
	return nil
}

// podLabels are the labels the Job controller gives a Job's pod: the
// template's, plus the Job's name and UID.
func podLabels(job *batchv1.Job) map[string]string {
	l := map[string]string{batchv1.JobNameLabel: job.Name, batchv1.ControllerUidLabel: string(job.UID)}
	for k, v := range job.Spec.Template.Labels {
		l[k] = v
	}
	return l
}
