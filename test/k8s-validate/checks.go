package main

// Semantic checks. The apiserver's own validation lives in k8s.io/kubernetes
// (pkg/apis/*/validation), which cannot be imported as a library, so this
// file re-states the subset of those rules that matter for the kinds Strata
// renders, built from the exported helpers in k8s.io/apimachinery. Field
// paths and messages follow the apiserver's so errors read the same as a
// failed `kubectl apply`.
//
// The checks run on the object as written, before the apiserver would apply
// defaults, so an omitted optional field is treated as "will be defaulted"
// rather than as invalid.

import (
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validate/content"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	pathvalidation "k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateObject dispatches on the decoded type. Kinds without specific
// rules still get their metadata checked.
func validateObject(obj runtime.Object) field.ErrorList {
	switch o := obj.(type) {
	case *appsv1.DaemonSet:
		return validateDaemonSet(o)
	case *corev1.Service:
		return validateService(o)
	case *corev1.Secret:
		return validateSecret(o)
	case *corev1.ConfigMap:
		return validateConfigMap(o)
	case *corev1.ServiceAccount:
		return validateServiceAccount(o)
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil
	}
	nameFn := metavalidation.NameIsDNSSubdomain
	if strings.HasPrefix(obj.GetObjectKind().GroupVersionKind().Group, rbacv1.GroupName) {
		// RBAC names are path segments so that "system:foo" is allowed.
		nameFn = pathvalidation.ValidatePathSegmentName
	}
	return validateMeta(m, nameFn)
}

// validateMeta checks name, namespace, labels and annotations. A missing
// namespace is fine: rendered manifests usually get it from `kubectl -n`.
// Only a namespace that is present is validated, because without a
// discovery/RESTMapper we cannot tell namespaced kinds from cluster-scoped
// ones.
func validateMeta(m metav1.Object, nameFn metavalidation.ValidateNameFunc) field.ErrorList {
	return metavalidation.ValidateObjectMetaAccessor(m, m.GetNamespace() != "", nameFn, field.NewPath("metadata"))
}

// ---------------------------------------------------------------- DaemonSet

func validateDaemonSet(ds *appsv1.DaemonSet) field.ErrorList {
	errs := validateMeta(ds, metavalidation.NameIsDNSSubdomain)
	spec := &ds.Spec
	specPath := field.NewPath("spec")

	// The selector is immutable and decides which pods the DaemonSet owns;
	// the apiserver requires it to be non-empty and to select the template.
	selPath := specPath.Child("selector")
	if spec.Selector == nil {
		errs = append(errs, field.Required(selPath, ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(spec.Selector, metav1validation.LabelSelectorValidationOptions{}, selPath)...)
		if len(spec.Selector.MatchLabels)+len(spec.Selector.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(selPath, spec.Selector, "empty selector is invalid for daemonset"))
		}
		if sel, err := metav1.LabelSelectorAsSelector(spec.Selector); err == nil && !sel.Matches(labels.Set(spec.Template.Labels)) {
			errs = append(errs, field.Invalid(specPath.Child("template", "metadata", "labels"), spec.Template.Labels, "`selector` does not match template `labels`"))
		}
	}

	errs = append(errs, metavalidation.ValidateNonnegativeField(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	if spec.RevisionHistoryLimit != nil {
		errs = append(errs, metavalidation.ValidateNonnegativeField(int64(*spec.RevisionHistoryLimit), specPath.Child("revisionHistoryLimit"))...)
	}
	errs = append(errs, validateDaemonSetUpdateStrategy(&spec.UpdateStrategy, specPath.Child("updateStrategy"))...)

	tplPath := specPath.Child("template")
	errs = append(errs, validateTemplateMeta(&spec.Template.ObjectMeta, tplPath.Child("metadata"))...)
	podPath := tplPath.Child("spec")
	errs = append(errs, validatePodSpec(&spec.Template.Spec, podPath)...)
	// A DaemonSet's pods are restarted in place, never completed.
	if rp := spec.Template.Spec.RestartPolicy; rp != "" && rp != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(podPath.Child("restartPolicy"), rp, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if spec.Template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(podPath.Child("activeDeadlineSeconds"), "activeDeadlineSeconds in DaemonSet is not Supported"))
	}
	return errs
}

func validateDaemonSetUpdateStrategy(s *appsv1.DaemonSetUpdateStrategy, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Type {
	case "", appsv1.RollingUpdateDaemonSetStrategyType: // "" defaults to RollingUpdate
	case appsv1.OnDeleteDaemonSetStrategyType:
		if s.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(fldPath.Child("rollingUpdate"), "may not be specified when strategy `type` is 'OnDelete'"))
		}
		return errs
	default:
		return append(errs, field.NotSupported(fldPath.Child("type"), s.Type,
			[]appsv1.DaemonSetUpdateStrategyType{appsv1.RollingUpdateDaemonSetStrategyType, appsv1.OnDeleteDaemonSetStrategyType}))
	}
	if ru := s.RollingUpdate; ru != nil {
		ruPath := fldPath.Child("rollingUpdate")
		errs = append(errs, validateIntOrPercent(ru.MaxUnavailable, ruPath.Child("maxUnavailable"))...)
		errs = append(errs, validateIntOrPercent(ru.MaxSurge, ruPath.Child("maxSurge"))...)
		if isZero(ru.MaxUnavailable) && isZero(ru.MaxSurge) {
			// Nothing could ever be replaced, so a rollout would hang.
			errs = append(errs, field.Invalid(ruPath.Child("maxUnavailable"), ru.MaxUnavailable, "may not be 0 when `maxSurge` is 0"))
		}
	}
	return errs
}

func validateIntOrPercent(v *intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	if v.Type == intstr.Int {
		return metavalidation.ValidateNonnegativeField(int64(v.IntVal), fldPath)
	}
	var errs field.ErrorList
	for _, msg := range validation.IsValidPercent(v.StrVal) {
		errs = append(errs, field.Invalid(fldPath, v.StrVal, msg))
	}
	if len(errs) == 0 {
		if p, _ := intstr.GetScaledValueFromIntOrPercent(v, 100, false); p > 100 {
			errs = append(errs, field.Invalid(fldPath, v.StrVal, "must not be greater than 100%"))
		}
	}
	return errs
}

func isZero(v *intstr.IntOrString) bool {
	if v == nil {
		return false // unset means "use the default", which is non-zero for maxUnavailable
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, 100, false)
	return err == nil && n == 0
}

// validateTemplateMeta checks the parts of a pod template's metadata that
// the apiserver validates (names are generated, so not those).
func validateTemplateMeta(m *metav1.ObjectMeta, fldPath *field.Path) field.ErrorList {
	errs := metav1validation.ValidateLabels(m.Labels, fldPath.Child("labels"))
	return append(errs, metavalidation.ValidateAnnotations(m.Annotations, fldPath.Child("annotations"))...)
}

// ------------------------------------------------------------------ PodSpec

func validatePodSpec(spec *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	volumes, errs := validateVolumes(spec.Volumes, fldPath.Child("volumes"))

	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(fldPath.Child("containers"), "must have at least one container"))
	}
	// Container names share one namespace across init and regular containers
	// (they key status, logs and exec).
	names := sets.New[string]()
	for i := range spec.InitContainers {
		errs = append(errs, validateContainer(&spec.InitContainers[i], spec, volumes, names, fldPath.Child("initContainers").Index(i))...)
	}
	for i := range spec.Containers {
		errs = append(errs, validateContainer(&spec.Containers[i], spec, volumes, names, fldPath.Child("containers").Index(i))...)
	}

	errs = append(errs, metav1validation.ValidateLabels(spec.NodeSelector, fldPath.Child("nodeSelector"))...)
	errs = append(errs, validateTolerations(spec.Tolerations, fldPath.Child("tolerations"))...)

	switch spec.DNSPolicy {
	case "", corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone:
	default:
		errs = append(errs, field.NotSupported(fldPath.Child("dnsPolicy"), spec.DNSPolicy,
			[]corev1.DNSPolicy{corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone}))
	}
	if n := spec.ServiceAccountName; n != "" {
		for _, msg := range metavalidation.NameIsDNSSubdomain(n, false) {
			errs = append(errs, field.Invalid(fldPath.Child("serviceAccountName"), n, msg))
		}
	}
	if n := spec.PriorityClassName; n != "" {
		for _, msg := range metavalidation.NameIsDNSSubdomain(n, false) {
			errs = append(errs, field.Invalid(fldPath.Child("priorityClassName"), n, msg))
		}
	}
	if spec.TerminationGracePeriodSeconds != nil {
		errs = append(errs, metavalidation.ValidateNonnegativeField(*spec.TerminationGracePeriodSeconds, fldPath.Child("terminationGracePeriodSeconds"))...)
	}
	return errs
}

// validateVolumes returns the set of declared volume names for the
// volumeMount check.
func validateVolumes(vols []corev1.Volume, fldPath *field.Path) (sets.Set[string], field.ErrorList) {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, v := range vols {
		idx := fldPath.Index(i)
		if v.Name == "" {
			errs = append(errs, field.Required(idx.Child("name"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Label(v.Name) {
				errs = append(errs, field.Invalid(idx.Child("name"), v.Name, msg))
			}
			if names.Has(v.Name) {
				errs = append(errs, field.Duplicate(idx.Child("name"), v.Name))
			}
			names.Insert(v.Name)
		}
		switch n := countSet(v.VolumeSource); {
		case n == 0:
			errs = append(errs, field.Required(idx, "must specify a volume type"))
		case n > 1:
			errs = append(errs, field.Forbidden(idx, "may not specify more than 1 volume type"))
		}
		if hp := v.HostPath; hp != nil {
			errs = append(errs, validateHostPath(hp, idx.Child("hostPath"))...)
		}
		if s := v.Secret; s != nil && s.SecretName == "" {
			errs = append(errs, field.Required(idx.Child("secret", "secretName"), ""))
		}
		if c := v.ConfigMap; c != nil && c.Name == "" {
			errs = append(errs, field.Required(idx.Child("configMap", "name"), ""))
		}
	}
	return names, errs
}

func validateHostPath(hp *corev1.HostPathVolumeSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	p := fldPath.Child("path")
	switch {
	case hp.Path == "":
		errs = append(errs, field.Required(p, ""))
	case !path.IsAbs(hp.Path):
		// Stricter than the apiserver, which accepts relative paths that the
		// kubelet then resolves unpredictably; a node agent must not do that.
		errs = append(errs, field.Invalid(p, hp.Path, "must be an absolute path"))
	case hasBacksteps(hp.Path):
		errs = append(errs, field.Invalid(p, hp.Path, "must not contain '..'"))
	}
	if hp.Type != nil {
		valid := []corev1.HostPathType{corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
			corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev}
		if !slices.Contains(valid, *hp.Type) {
			errs = append(errs, field.NotSupported(fldPath.Child("type"), *hp.Type, valid))
		}
	}
	return errs
}

func validateContainer(c *corev1.Container, pod *corev1.PodSpec, volumes, names sets.Set[string], fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.Name == "" {
		errs = append(errs, field.Required(fldPath.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(fldPath.Child("name"), c.Name, msg))
		}
		if names.Has(c.Name) {
			errs = append(errs, field.Duplicate(fldPath.Child("name"), c.Name))
		}
		names.Insert(c.Name)
	}
	// The apiserver only enforces this on Pods, not templates, but every pod
	// the DaemonSet creates would then be rejected, so report it here.
	if strings.TrimSpace(c.Image) == "" {
		errs = append(errs, field.Required(fldPath.Child("image"), ""))
	}
	switch c.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, field.NotSupported(fldPath.Child("imagePullPolicy"), c.ImagePullPolicy,
			[]corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}))
	}

	errs = append(errs, validatePorts(c.Ports, pod.HostNetwork, fldPath.Child("ports"))...)
	errs = append(errs, validateEnv(c.Env, fldPath.Child("env"))...)
	errs = append(errs, validateEnvFrom(c.EnvFrom, fldPath.Child("envFrom"))...)
	errs = append(errs, validateResources(&c.Resources, fldPath.Child("resources"))...)
	errs = append(errs, validateVolumeMounts(c.VolumeMounts, volumes, fldPath.Child("volumeMounts"))...)

	errs = append(errs, validateProbe(c.LivenessProbe, true, fldPath.Child("livenessProbe"))...)
	errs = append(errs, validateProbe(c.ReadinessProbe, false, fldPath.Child("readinessProbe"))...)
	errs = append(errs, validateProbe(c.StartupProbe, true, fldPath.Child("startupProbe"))...)

	if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged &&
		sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		errs = append(errs, field.Invalid(fldPath.Child("securityContext"), sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
	}
	return errs
}

var supportedProtocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}

func validatePorts(ports []corev1.ContainerPort, hostNetwork bool, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, p := range ports {
		idx := fldPath.Index(i)
		if p.Name != "" {
			for _, msg := range validation.IsValidPortName(p.Name) {
				errs = append(errs, field.Invalid(idx.Child("name"), p.Name, msg))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(idx.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		if p.ContainerPort == 0 {
			errs = append(errs, field.Required(idx.Child("containerPort"), ""))
		} else {
			for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
				errs = append(errs, field.Invalid(idx.Child("containerPort"), p.ContainerPort, msg))
			}
		}
		if p.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(p.HostPort)) {
				errs = append(errs, field.Invalid(idx.Child("hostPort"), p.HostPort, msg))
			}
			// With hostNetwork the container *is* on the host's ports; a
			// different hostPort would be a mapping that cannot exist.
			if hostNetwork && p.HostPort != p.ContainerPort {
				errs = append(errs, field.Invalid(idx.Child("hostPort"), p.HostPort, "must match `containerPort` when `hostNetwork` is true"))
			}
		}
		if p.Protocol != "" && !slices.Contains(supportedProtocols, p.Protocol) {
			errs = append(errs, field.NotSupported(idx.Child("protocol"), p.Protocol, supportedProtocols))
		}
	}
	return errs
}

func validateEnv(env []corev1.EnvVar, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, e := range env {
		idx := fldPath.Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(idx.Child("name"), ""))
		} else {
			// Relaxed names are GA since Kubernetes 1.34.
			for _, msg := range validation.IsRelaxedEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(idx.Child("name"), e.Name, msg))
			}
		}
		vf := e.ValueFrom
		if vf == nil {
			continue
		}
		vfPath := idx.Child("valueFrom")
		if e.Value != "" {
			errs = append(errs, field.Invalid(vfPath, "", "may not be specified when `value` is not empty"))
		}
		if n := countSet(*vf); n != 1 {
			errs = append(errs, field.Invalid(vfPath, "", "must specify exactly one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`"))
		}
		if r := vf.SecretKeyRef; r != nil {
			errs = append(errs, validateKeyRef(r.Name, r.Key, vfPath.Child("secretKeyRef"))...)
		}
		if r := vf.ConfigMapKeyRef; r != nil {
			errs = append(errs, validateKeyRef(r.Name, r.Key, vfPath.Child("configMapKeyRef"))...)
		}
	}
	return errs
}

func validateKeyRef(name, key string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if name == "" {
		errs = append(errs, field.Required(fldPath.Child("name"), ""))
	}
	if key == "" {
		errs = append(errs, field.Required(fldPath.Child("key"), ""))
	} else {
		for _, msg := range validation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(fldPath.Child("key"), key, msg))
		}
	}
	return errs
}

func validateEnvFrom(envFrom []corev1.EnvFromSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, e := range envFrom {
		idx := fldPath.Index(i)
		n := 0
		if e.ConfigMapRef != nil {
			n++
		}
		if e.SecretRef != nil {
			n++
		}
		if n != 1 {
			errs = append(errs, field.Invalid(idx, "", "must specify exactly one of: `configMapRef` or `secretRef`"))
		}
	}
	return errs
}

// validateResources mirrors ValidateResourceRequirements: requests may not
// exceed limits, and resources that cannot be overcommitted (hugepages,
// extended resources) need requests equal to limits.
func validateResources(r *corev1.ResourceRequirements, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	limPath, reqPath := fldPath.Child("limits"), fldPath.Child("requests")
	hasHugePages, hasCPUOrMemory := false, false

	for name, q := range r.Limits {
		errs = append(errs, validateResourceQuantity(name, q, limPath.Key(string(name)))...)
		hasHugePages = hasHugePages || isHugePages(name)
		hasCPUOrMemory = hasCPUOrMemory || name == corev1.ResourceCPU || name == corev1.ResourceMemory
	}
	for name, q := range r.Requests {
		p := reqPath.Key(string(name))
		errs = append(errs, validateResourceQuantity(name, q, p)...)
		hasHugePages = hasHugePages || isHugePages(name)
		hasCPUOrMemory = hasCPUOrMemory || name == corev1.ResourceCPU || name == corev1.ResourceMemory

		limit, ok := r.Limits[name]
		switch {
		case ok && q.Cmp(limit) > 0:
			errs = append(errs, field.Invalid(p, q.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, limit.String())))
		case ok && !overcommitAllowed(name) && q.Cmp(limit) != 0:
			errs = append(errs, field.Invalid(p, q.String(), fmt.Sprintf("must be equal to %s limit of %s", name, limit.String())))
		case !ok && !overcommitAllowed(name):
			errs = append(errs, field.Required(limPath, "Limit must be set for non overcommitable resources"))
		}
	}
	if hasHugePages && !hasCPUOrMemory {
		errs = append(errs, field.Forbidden(fldPath, "HugePages require cpu or memory"))
	}
	return errs
}

func validateResourceQuantity(name corev1.ResourceName, q resource.Quantity, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range apivalidation.IsLabelKey(string(name)) {
		errs = append(errs, field.Invalid(fldPath, name, msg))
	}
	if q.Sign() < 0 {
		errs = append(errs, field.Invalid(fldPath, q.String(), "must be greater than or equal to 0"))
	}
	return errs
}

func isHugePages(name corev1.ResourceName) bool {
	return strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix)
}

// overcommitAllowed follows helper.IsOvercommitAllowed: only native
// (unprefixed or kubernetes.io/) resources other than hugepages may be.
func overcommitAllowed(name corev1.ResourceName) bool {
	s := string(name)
	native := !strings.Contains(s, "/") || strings.Contains(s, corev1.ResourceDefaultNamespacePrefix)
	return native && !isHugePages(name)
}

func validateVolumeMounts(mounts []corev1.VolumeMount, volumes sets.Set[string], fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		idx := fldPath.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(idx.Child("name"), ""))
		} else if !volumes.Has(m.Name) {
			errs = append(errs, field.NotFound(idx.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(idx.Child("mountPath"), ""))
		} else if paths.Has(m.MountPath) {
			errs = append(errs, field.Invalid(idx.Child("mountPath"), m.MountPath, "must be unique"))
		}
		paths.Insert(m.MountPath)
		if m.SubPath != "" && (path.IsAbs(m.SubPath) || hasBacksteps(m.SubPath)) {
			errs = append(errs, field.Invalid(idx.Child("subPath"), m.SubPath, "must be a relative path without '..'"))
		}
	}
	return errs
}

func validateProbe(p *corev1.Probe, successMustBeOne bool, fldPath *field.Path) field.ErrorList {
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	// The kubelet runs exactly one handler; zero or several is ambiguous.
	switch n := countSet(p.ProbeHandler); {
	case n == 0:
		errs = append(errs, field.Required(fldPath, "must specify a handler type"))
	case n > 1:
		errs = append(errs, field.Forbidden(fldPath, "may not specify more than 1 handler type"))
	}
	if h := p.HTTPGet; h != nil {
		errs = append(errs, validatePortNumOrName(h.Port, fldPath.Child("httpGet", "port"))...)
		if h.Scheme != "" && h.Scheme != corev1.URISchemeHTTP && h.Scheme != corev1.URISchemeHTTPS {
			errs = append(errs, field.NotSupported(fldPath.Child("httpGet", "scheme"), h.Scheme, []corev1.URIScheme{corev1.URISchemeHTTP, corev1.URISchemeHTTPS}))
		}
	}
	if t := p.TCPSocket; t != nil {
		errs = append(errs, validatePortNumOrName(t.Port, fldPath.Child("tcpSocket", "port"))...)
	}
	for _, f := range []struct {
		name string
		v    int32
	}{{"initialDelaySeconds", p.InitialDelaySeconds}, {"timeoutSeconds", p.TimeoutSeconds}, {"periodSeconds", p.PeriodSeconds},
		{"successThreshold", p.SuccessThreshold}, {"failureThreshold", p.FailureThreshold}} {
		errs = append(errs, metavalidation.ValidateNonnegativeField(int64(f.v), fldPath.Child(f.name))...)
	}
	// Liveness and startup probes have no "became ready" transition, so the
	// apiserver pins their success threshold to 1.
	if successMustBeOne && p.SuccessThreshold != 0 && p.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(fldPath.Child("successThreshold"), p.SuccessThreshold, "must be 1"))
	}
	return errs
}

func validatePortNumOrName(port intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Type == intstr.Int {
		for _, msg := range validation.IsValidPortNum(port.IntValue()) {
			errs = append(errs, field.Invalid(fldPath, port.IntValue(), msg))
		}
	} else {
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			errs = append(errs, field.Invalid(fldPath, port.StrVal, msg))
		}
	}
	return errs
}

func validateTolerations(tols []corev1.Toleration, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	effects := []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}
	for i, t := range tols {
		idx := fldPath.Index(i)
		if t.Key != "" {
			errs = append(errs, metav1validation.ValidateLabelName(t.Key, idx.Child("key"))...)
		} else if t.Operator != corev1.TolerationOpExists {
			// An empty key matches every taint, which only makes sense with Exists.
			errs = append(errs, field.Invalid(idx.Child("operator"), t.Operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
		}
		switch t.Operator {
		case "", corev1.TolerationOpEqual:
			for _, msg := range apivalidation.IsLabelValue(t.Value) {
				errs = append(errs, field.Invalid(idx.Child("value"), t.Value, msg))
			}
		case corev1.TolerationOpExists:
			if t.Value != "" {
				errs = append(errs, field.Invalid(idx.Child("operator"), t.Value, "value must be empty when `operator` is 'Exists'"))
			}
		default:
			errs = append(errs, field.NotSupported(idx.Child("operator"), t.Operator, []corev1.TolerationOperator{corev1.TolerationOpEqual, corev1.TolerationOpExists}))
		}
		if t.Effect != "" && !slices.Contains(effects, t.Effect) {
			errs = append(errs, field.NotSupported(idx.Child("effect"), t.Effect, effects))
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			errs = append(errs, field.Invalid(idx.Child("effect"), t.Effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
		}
	}
	return errs
}

// ------------------------------------------------------------------ Service

func validateService(svc *corev1.Service) field.ErrorList {
	// Service names become DNS labels (<name>.<ns>.svc), hence DNS-1035.
	errs := validateMeta(svc, metavalidation.NameIsDNS1035Label)
	spec := &svc.Spec
	specPath := field.NewPath("spec")

	types := []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName}
	svcType := spec.Type
	if svcType == "" {
		svcType = corev1.ServiceTypeClusterIP
	}
	if !slices.Contains(types, svcType) {
		errs = append(errs, field.NotSupported(specPath.Child("type"), spec.Type, types))
	}
	headless := spec.ClusterIP == corev1.ClusterIPNone

	switch {
	case spec.ClusterIP == "" || headless:
	default:
		errs = append(errs, validation.IsValidIP(specPath.Child("clusterIP"), spec.ClusterIP)...)
	}
	if headless && svcType != corev1.ServiceTypeClusterIP {
		errs = append(errs, field.Invalid(specPath.Child("clusterIP"), spec.ClusterIP, "may only be set to 'None' for ClusterIP services"))
	}
	if svcType == corev1.ServiceTypeExternalName {
		if spec.ExternalName == "" {
			errs = append(errs, field.Required(specPath.Child("externalName"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(strings.TrimSuffix(spec.ExternalName, ".")) {
				errs = append(errs, field.Invalid(specPath.Child("externalName"), spec.ExternalName, msg))
			}
		}
	}

	// Headless services may have no ports (pure DNS for pods); everything
	// else that proxies traffic needs at least one.
	if len(spec.Ports) == 0 && !headless && svcType != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(specPath.Child("ports"), ""))
	}
	names := sets.New[string]()
	type portKey struct {
		port  int32
		proto corev1.Protocol
	}
	seen := map[portKey]bool{}
	for i, p := range spec.Ports {
		idx := specPath.Child("ports").Index(i)
		// With several ports the name is how Endpoints/EndpointSlices and
		// named targetPorts tell them apart.
		if len(spec.Ports) > 1 && p.Name == "" {
			errs = append(errs, field.Required(idx.Child("name"), ""))
		}
		if p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				errs = append(errs, field.Invalid(idx.Child("name"), p.Name, msg))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(idx.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		for _, msg := range validation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(idx.Child("port"), p.Port, msg))
		}
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if !slices.Contains(supportedProtocols, proto) {
			errs = append(errs, field.NotSupported(idx.Child("protocol"), p.Protocol, supportedProtocols))
		}
		k := portKey{p.Port, proto}
		if seen[k] {
			errs = append(errs, field.Duplicate(idx, fmt.Sprintf("%d/%s", p.Port, proto)))
		}
		seen[k] = true
		// targetPort 0 means "same as port" and is defaulted.
		if p.TargetPort.Type == intstr.String || p.TargetPort.IntVal != 0 {
			errs = append(errs, validatePortNumOrName(p.TargetPort, idx.Child("targetPort"))...)
		}
		if p.NodePort != 0 {
			if svcType != corev1.ServiceTypeNodePort && svcType != corev1.ServiceTypeLoadBalancer {
				errs = append(errs, field.Forbidden(idx.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			}
			for _, msg := range validation.IsValidPortNum(int(p.NodePort)) {
				errs = append(errs, field.Invalid(idx.Child("nodePort"), p.NodePort, msg))
			}
		}
	}

	errs = append(errs, metav1validation.ValidateLabels(spec.Selector, specPath.Child("selector"))...)
	switch spec.SessionAffinity {
	case "", corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP:
	default:
		errs = append(errs, field.NotSupported(specPath.Child("sessionAffinity"), spec.SessionAffinity,
			[]corev1.ServiceAffinity{corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP}))
	}
	if spec.ExternalTrafficPolicy != "" && svcType != corev1.ServiceTypeNodePort && svcType != corev1.ServiceTypeLoadBalancer {
		errs = append(errs, field.Invalid(specPath.Child("externalTrafficPolicy"), spec.ExternalTrafficPolicy, "may only be set for externally-accessible services"))
	}
	return errs
}

// ------------------------------------------------------------ Secret & co.

// requiredSecretKeys lists, per built-in type, keys the apiserver insists
// on. (basic-auth is special-cased: either key will do.)
var requiredSecretKeys = map[corev1.SecretType][]string{
	corev1.SecretTypeTLS:              {corev1.TLSCertKey, corev1.TLSPrivateKeyKey},
	corev1.SecretTypeDockercfg:        {corev1.DockerConfigKey},
	corev1.SecretTypeDockerConfigJson: {corev1.DockerConfigJsonKey},
	corev1.SecretTypeSSHAuth:          {corev1.SSHAuthPrivateKey},
}

var builtinSecretTypes = []corev1.SecretType{corev1.SecretTypeOpaque, corev1.SecretTypeServiceAccountToken,
	corev1.SecretTypeDockercfg, corev1.SecretTypeDockerConfigJson, corev1.SecretTypeBasicAuth,
	corev1.SecretTypeSSHAuth, corev1.SecretTypeTLS, corev1.SecretTypeBootstrapToken}

func validateSecret(s *corev1.Secret) field.ErrorList {
	errs := validateMeta(s, metavalidation.NameIsDNSSubdomain)
	dataPath, strPath := field.NewPath("data"), field.NewPath("stringData")

	// The apiserver merges stringData into data before validating, so keys
	// and sizes are judged on the union.
	keys := sets.New[string]()
	size := 0
	for k, v := range s.Data {
		errs = append(errs, validateConfigKey(k, dataPath.Key(k))...)
		keys.Insert(k)
		size += len(v)
	}
	for k, v := range s.StringData {
		errs = append(errs, validateConfigKey(k, strPath.Key(k))...)
		if !keys.Has(k) {
			size += len(v)
		}
		keys.Insert(k)
	}
	if size > corev1.MaxSecretSize {
		errs = append(errs, field.TooLong(dataPath, "", corev1.MaxSecretSize))
	}

	typePath := field.NewPath("type")
	switch {
	case s.Type == "" || slices.Contains(builtinSecretTypes, s.Type):
	case strings.Contains(string(s.Type), "/"):
		// Custom types are conventionally domain-prefixed ("example.com/x")
		// and the apiserver accepts any; just check the shape.
		for _, msg := range apivalidation.IsLabelKey(string(s.Type)) {
			errs = append(errs, field.Invalid(typePath, s.Type, msg))
		}
	default:
		// Stricter than the apiserver (which stores any string): an
		// unprefixed unknown type is almost certainly a typo of a built-in
		// one, e.g. "Opaqe", and would silently lose its meaning.
		errs = append(errs, field.NotSupported(typePath, s.Type, builtinSecretTypes))
	}
	for _, k := range requiredSecretKeys[s.Type] {
		if !keys.Has(k) {
			errs = append(errs, field.Required(dataPath.Key(k), ""))
		}
	}
	switch s.Type {
	case corev1.SecretTypeBasicAuth:
		if !keys.Has(corev1.BasicAuthUsernameKey) && !keys.Has(corev1.BasicAuthPasswordKey) {
			errs = append(errs, field.Required(dataPath.Key(corev1.BasicAuthUsernameKey), ""),
				field.Required(dataPath.Key(corev1.BasicAuthPasswordKey), ""))
		}
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	}
	return errs
}

func validateConfigMap(cm *corev1.ConfigMap) field.ErrorList {
	errs := validateMeta(cm, metavalidation.NameIsDNSSubdomain)
	size := 0
	for k, v := range cm.Data {
		errs = append(errs, validateConfigKey(k, field.NewPath("data").Key(k))...)
		size += len(v)
	}
	for k, v := range cm.BinaryData {
		p := field.NewPath("binaryData").Key(k)
		errs = append(errs, validateConfigKey(k, p)...)
		// Both maps project into the same files/env names.
		if _, dup := cm.Data[k]; dup {
			errs = append(errs, field.Invalid(p, k, "duplicate of key present in data"))
		}
		size += len(v)
	}
	if size > corev1.MaxSecretSize {
		errs = append(errs, field.TooLong(field.NewPath("data"), "", corev1.MaxSecretSize))
	}
	return errs
}

func validateServiceAccount(sa *corev1.ServiceAccount) field.ErrorList {
	errs := validateMeta(sa, metavalidation.NameIsDNSSubdomain)
	for i, r := range sa.ImagePullSecrets {
		if r.Name == "" {
			errs = append(errs, field.Required(field.NewPath("imagePullSecrets").Index(i).Child("name"), ""))
		}
	}
	return errs
}

func validateConfigKey(k string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsConfigMapKey(k) {
		errs = append(errs, field.Invalid(fldPath, k, msg))
	}
	return errs
}

// ------------------------------------------------------------------ helpers

// countSet counts the non-nil pointer fields of a one-of struct
// (VolumeSource, ProbeHandler, EnvVarSource). Reflection keeps this correct
// as new members are added to those unions in later API versions.
func countSet(oneOf any) int {
	v := reflect.ValueOf(oneOf)
	n := 0
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

func hasBacksteps(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}
