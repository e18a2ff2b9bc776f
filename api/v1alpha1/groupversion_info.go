// Package v1alpha1 holds the HerokuNixApp API: a Nix flake deployed to a
// Heroku app as container images.
// +kubebuilder:object:generate=true
// +groupName=herokunix.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "herokunix.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package. It depends on
	// apimachinery only, so the API stays cheap to import.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &HerokuNixApp{}, &HerokuNixAppList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
