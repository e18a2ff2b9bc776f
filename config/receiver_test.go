package config_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The receiver is off in config/default and on, reachable through its
// Service, in config/webhook-receiver.
func TestWebhookReceiverOverlay(t *testing.T) {
	def := find[*appsv1.Deployment](t, render(t, "default"), "herokunix-controller-manager")
	for _, a := range def.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "--webhook-bind-address") {
			t.Errorf("config/default turns the receiver on: %s", a)
		}
	}

	r := render(t, "webhook-receiver")
	d := find[*appsv1.Deployment](t, r, "herokunix-controller-manager")
	c := d.Spec.Template.Spec.Containers[0]
	for _, arg := range []string{"--leader-elect", "--webhook-bind-address=:9292", "--webhook-secret=herokunix-webhooks"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	var ns bool
	for _, e := range c.Env {
		ns = ns || (e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace")
	}
	if !ns {
		t.Error("the manager is not told its namespace (POD_NAMESPACE), where the receiver's Secret lives")
	}
	svc := find[*corev1.Service](t, r, "herokunix-webhook-receiver")
	if svc.Namespace != installNamespace {
		t.Errorf("receiver Service in namespace %q", svc.Namespace)
	}
	if len(svc.Spec.Ports) != 1 || containerPort(c, svc.Spec.Ports[0].TargetPort.String()) != 9292 {
		t.Errorf("receiver Service ports %+v do not reach the container's 9292", svc.Spec.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("receiver Service selector %s=%s does not select the manager's pods", k, v)
		}
	}
	// The metrics Service keeps reaching only the metrics port.
	find[*corev1.Service](t, r, "herokunix-controller-manager-metrics")
}
