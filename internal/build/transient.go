package build

import (
	"regexp"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// Why a failed build may get through when run again unchanged (State.Transient).
const (
	TransientEvicted  = "the build pod was evicted or preempted"
	TransientGone     = "the build pod is gone"
	TransientDeadline = "the build ran past its deadline (spec.build.timeout)"
	TransientNetwork  = "a download or upload failed on the network"
)

// networkFailure matches what Nix, git (fetching a flake) and the push
// (go-containerregistry) write when the network or a server, not the
// build, failed: a forge or cache answering 5xx, 429 or 408, a name that
// did not resolve, a connection that broke or timed out. A 4xx other than
// those (a missing ref, a refused token) fails the same way again: it is
// the build's failure, which a change of spec or Secret re-runs.
var networkFailure = regexp.MustCompile(`(?i)` +
	`unable to (?:download|access) '[^']*':[^\n]*?(?:` +
	`HTTP error (?:5\d\d|429|408)|returned error: (?:5\d\d|429|408)|` +
	`(?:couldn't|could not) (?:resolve|connect)|failed to connect|timeout was reached|timed out|` +
	`connection reset|failure when receiving|recv failure|send failure|SSL connect error)` +
	`|unexpected status code (?:5\d\d|429|408)|status code:? (?:5\d\d|429|408)\b` +
	`|TLS handshake timeout|connection reset by peer|i/o timeout|temporary failure in name resolution`)

// transientMessage says whether a failure message is a network failure
// (TransientNetwork), or "".
func transientMessage(msg string) string {
	if networkFailure.MatchString(msg) {
		return TransientNetwork
	}
	return ""
}

// transientJob says why a failed Job may get through when run again: its
// pod was evicted or preempted (a DisruptionTarget condition, or the
// kubelet's Evicted reason), it ran past its deadline, or no pod is left to
// say (deleted with its node); else what its message shows, or "". An
// OOMKilled container is not transient: the same build asks for the same
// memory, and more memory (spec.build.resources) re-runs it.
func transientJob(job *batchv1.Job, pods []corev1.Pod, msg string) string {
	for _, pod := range pods {
		if pod.Status.Reason == "Evicted" {
			return TransientEvicted
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
				return TransientEvicted
			}
		}
	}
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue && c.Reason == batchv1.JobReasonDeadlineExceeded {
			return TransientDeadline
		}
	}
	if len(pods) == 0 {
		return TransientGone
	}
	return transientMessage(msg)
}
