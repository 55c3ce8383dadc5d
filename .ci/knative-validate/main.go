// Command knative-validate runs Knative's own admission logic over Kubernetes YAML documents, offline.
//
// For every document whose apiVersion/kind one of the Knative webhooks handles (serving, eventing,
// eventing-kafka-broker), it does what the webhook does on `kubectl apply` of a new object:
//
//  1. decode the document into Knative's Go type, strictly: an unknown field is an error (the API
//     server's strict field validation, kubectl's default, refuses it too);
//  2. with the webhook's context (its ConfigMap stores, `apis.WithinCreate`, a user), call
//     `SetDefaults(ctx)` as the defaulting webhook does;
//  3. call `Validate(ctx)` on the defaulted object as the validating webhook does.
//
// A Broker goes through both webhooks that see it on a cluster (eventing's and the Kafka one's stub).
// Triggers also get the Kafka Trigger reconciler's check of `kafka.eventing.knative.dev/delivery.order`
// (it refuses other values at reconcile time, not at admission).
//
// The ConfigMaps the webhooks read (config-features, config-br-defaults, ...) come from -config, a YAML
// file of ConfigMaps in namespaces knative-serving and knative-eventing: the cluster as we run it.
// A ConfigMap the file does not hold is taken as empty (the release's defaults).
//
// Kinds outside the Knative groups (core Kubernetes, Dapr, Strimzi, ...) are skipped and listed; an
// unknown kind or version inside a *.knative.dev group is an error (no such CRD on the cluster), except
// the few Knative kinds listed in notValidated, which are skipped with the reason.
//
// Usage: knative-validate [-config cluster-config.yaml] [-json [-defaulted]] FILE... ("-" or none: stdin)
// Exit status: 0 no error, 1 at least one error, 2 bad usage or unreadable input.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	// PingSource timezones are checked with time.LoadLocation: carry the zone database (the webhook's
	// image has one) so the result does not depend on the host's /usr/share/zoneinfo.
	_ "time/tzdata"

	"go.uber.org/zap"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"knative.dev/pkg/apis"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/webhook/resourcesemantics"

	servingconfig "knative.dev/serving/pkg/apis/config"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	servingv1beta1 "knative.dev/serving/pkg/apis/serving/v1beta1"

	eventingconfig "knative.dev/eventing/pkg/apis/config"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	eventingv1alpha1 "knative.dev/eventing/pkg/apis/eventing/v1alpha1"
	eventingv1beta1 "knative.dev/eventing/pkg/apis/eventing/v1beta1"
	eventingv1beta2 "knative.dev/eventing/pkg/apis/eventing/v1beta2"
	"knative.dev/eventing/pkg/apis/feature"
	flowsv1 "knative.dev/eventing/pkg/apis/flows/v1"
	channelconfig "knative.dev/eventing/pkg/apis/messaging/config"
	messagingv1 "knative.dev/eventing/pkg/apis/messaging/v1"
	sinksv1alpha1 "knative.dev/eventing/pkg/apis/sinks/v1alpha1"
	pingconfig "knative.dev/eventing/pkg/apis/sources/config"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	sourcesv1alpha1 "knative.dev/eventing/pkg/apis/sources/v1alpha1"
	sourcesv1beta2 "knative.dev/eventing/pkg/apis/sources/v1beta2"

	kafkaeventingv1 "knative.dev/eventing-kafka-broker/control-plane/pkg/apis/eventing/v1"
	kafkaeventingv1alpha1 "knative.dev/eventing-kafka-broker/control-plane/pkg/apis/eventing/v1alpha1"
	kafkamessagingv1 "knative.dev/eventing-kafka-broker/control-plane/pkg/apis/messaging/v1"
	kafkamessagingv1beta1 "knative.dev/eventing-kafka-broker/control-plane/pkg/apis/messaging/v1beta1"
	kafkasourcesv1 "knative.dev/eventing-kafka-broker/control-plane/pkg/apis/sources/v1"
	kafkasourcesv1beta1 "knative.dev/eventing-kafka-broker/control-plane/pkg/apis/sources/v1beta1"
)

const (
	servingNamespace  = "knative-serving"
	eventingNamespace = "knative-eventing"
	// The Kafka Trigger reconciler reads this annotation (control-plane/pkg/reconciler/trigger).
	deliveryOrderAnnotation = "kafka.eventing.knative.dev/delivery.order"
)

// webhook is one admission webhook of a Knative release: the types it handles and the context its
// defaulting and validating controllers give them (cmd/webhook/main.go of each module).
type webhook struct {
	name      string
	types     map[schema.GroupVersionKind]func() resourcesemantics.GenericCRD
	defaulter func(context.Context) context.Context
	validator func(context.Context) context.Context
}

func gvk(gv schema.GroupVersion, kind string) schema.GroupVersionKind { return gv.WithKind(kind) }

// notValidated: Knative kinds a webhook handles that this program does not run, and why.
var notValidated = map[schema.GroupVersionKind]string{
	gvk(sinksv1alpha1.SchemeGroupVersion, "JobSink"):                          "its validation dry-runs the Job against the API server",
	gvk(eventingv1alpha1.SchemeGroupVersion, "RequestReply"):                  "its validation needs the webhook's KN_VERIFY_CORRELATION_ID CESQL function, built from a Secret informer",
	gvk(messagingv1.SchemeGroupVersion, "InMemoryChannel"):                    "validated by the in-memory channel's own webhook, not built here",
	{Group: "bindings.knative.dev", Version: "v1beta1", Kind: "KafkaBinding"}: "deprecated; no webhook of eventing-kafka-broker validates it",
}

// Internal Knative groups: objects the controllers make, never written by hand; skipped like core kinds.
var internalGroups = []string{"internal.knative.dev", "internal.kafka.eventing.knative.dev"}

type stores struct {
	cms    map[string]*corev1.ConfigMap // namespace/name
	errors []string
}

// Watch calls every observer at once with the ConfigMap the file holds, else an empty one (the
// release's defaults), as the webhook's informer would on start.
func (s *stores) watcher(namespace string) configmap.Watcher {
	return &staticWatcher{stores: s, namespace: namespace}
}

type staticWatcher struct {
	stores    *stores
	namespace string
}

func (w *staticWatcher) Watch(name string, observers ...configmap.Observer) {
	cm, ok := w.stores.cms[w.namespace+"/"+name]
	if !ok {
		cm = &corev1.ConfigMap{}
		cm.Name, cm.Namespace = name, w.namespace
	}
	for _, observe := range observers {
		observe(cm)
	}
}

func (w *staticWatcher) Start(<-chan struct{}) error { return nil }

// storeLogger turns a store's Fatalf (a ConfigMap its constructor refuses) into an error of the run.
type storeLogger struct{ stores *stores }

func (l storeLogger) Debugf(string, ...interface{}) {}
func (l storeLogger) Infof(string, ...interface{})  {}
func (l storeLogger) Errorf(format string, args ...interface{}) {
	l.stores.errors = append(l.stores.errors, fmt.Sprintf(format, args...))
}
func (l storeLogger) Fatalf(format string, args ...interface{}) {
	l.stores.errors = append(l.stores.errors, fmt.Sprintf(format, args...))
}

func webhooks(s *stores) []webhook {
	logger := storeLogger{s}
	serving := s.watcher(servingNamespace)
	eventing := s.watcher(eventingNamespace)

	// knative.dev/serving cmd/webhook: one apis/config store (config-defaults, config-features).
	servingStore := servingconfig.NewStore(logger)
	servingStore.WatchConfigs(serving)

	// knative.dev/eventing cmd/webhook: defaults, channel defaults, features; validation adds ping defaults.
	brStore := eventingconfig.NewStore(logger)
	brStore.WatchConfigs(eventing)
	chStore := channelconfig.NewStore(logger)
	chStore.WatchConfigs(eventing)
	pingStore := pingconfig.NewStore(logger)
	pingStore.WatchConfigs(eventing)
	featureStore := feature.NewStore(logger)
	featureStore.WatchConfigs(eventing)

	return []webhook{
		{
			name: "webhook.serving.knative.dev",
			types: map[schema.GroupVersionKind]func() resourcesemantics.GenericCRD{
				gvk(servingv1.SchemeGroupVersion, "Service"):            func() resourcesemantics.GenericCRD { return &servingv1.Service{} },
				gvk(servingv1.SchemeGroupVersion, "Configuration"):      func() resourcesemantics.GenericCRD { return &servingv1.Configuration{} },
				gvk(servingv1.SchemeGroupVersion, "Route"):              func() resourcesemantics.GenericCRD { return &servingv1.Route{} },
				gvk(servingv1.SchemeGroupVersion, "Revision"):           func() resourcesemantics.GenericCRD { return &servingv1.Revision{} },
				gvk(servingv1beta1.SchemeGroupVersion, "DomainMapping"): func() resourcesemantics.GenericCRD { return &servingv1beta1.DomainMapping{} },
			},
			defaulter: servingStore.ToContext,
			validator: servingStore.ToContext,
		},
		{
			name: "webhook.eventing.knative.dev",
			types: map[schema.GroupVersionKind]func() resourcesemantics.GenericCRD{
				gvk(eventingv1alpha1.SchemeGroupVersion, "EventPolicy"):    func() resourcesemantics.GenericCRD { return &eventingv1alpha1.EventPolicy{} },
				gvk(eventingv1alpha1.SchemeGroupVersion, "EventTransform"): func() resourcesemantics.GenericCRD { return &eventingv1alpha1.EventTransform{} },
				gvk(eventingv1beta1.SchemeGroupVersion, "EventType"):       func() resourcesemantics.GenericCRD { return &eventingv1beta1.EventType{} },
				gvk(eventingv1beta2.SchemeGroupVersion, "EventType"):       func() resourcesemantics.GenericCRD { return &eventingv1beta2.EventType{} },
				gvk(eventingv1.SchemeGroupVersion, "Broker"):               func() resourcesemantics.GenericCRD { return &eventingv1.Broker{} },
				gvk(eventingv1.SchemeGroupVersion, "Trigger"):              func() resourcesemantics.GenericCRD { return &eventingv1.Trigger{} },
				gvk(messagingv1.SchemeGroupVersion, "Channel"):             func() resourcesemantics.GenericCRD { return &messagingv1.Channel{} },
				gvk(messagingv1.SchemeGroupVersion, "Subscription"):        func() resourcesemantics.GenericCRD { return &messagingv1.Subscription{} },
				gvk(sourcesv1alpha1.SchemeGroupVersion, "IntegrationSource"): func() resourcesemantics.GenericCRD {
					return &sourcesv1alpha1.IntegrationSource{}
				},
				gvk(sourcesv1beta2.SchemeGroupVersion, "PingSource"):     func() resourcesemantics.GenericCRD { return &sourcesv1beta2.PingSource{} },
				gvk(sourcesv1.SchemeGroupVersion, "ApiServerSource"):     func() resourcesemantics.GenericCRD { return &sourcesv1.ApiServerSource{} },
				gvk(sourcesv1.SchemeGroupVersion, "PingSource"):          func() resourcesemantics.GenericCRD { return &sourcesv1.PingSource{} },
				gvk(sourcesv1.SchemeGroupVersion, "SinkBinding"):         func() resourcesemantics.GenericCRD { return &sourcesv1.SinkBinding{} },
				gvk(sourcesv1.SchemeGroupVersion, "ContainerSource"):     func() resourcesemantics.GenericCRD { return &sourcesv1.ContainerSource{} },
				gvk(sinksv1alpha1.SchemeGroupVersion, "IntegrationSink"): func() resourcesemantics.GenericCRD { return &sinksv1alpha1.IntegrationSink{} },
				gvk(flowsv1.SchemeGroupVersion, "Parallel"):              func() resourcesemantics.GenericCRD { return &flowsv1.Parallel{} },
				gvk(flowsv1.SchemeGroupVersion, "Sequence"):              func() resourcesemantics.GenericCRD { return &flowsv1.Sequence{} },
			},
			defaulter: func(ctx context.Context) context.Context {
				return featureStore.ToContext(chStore.ToContext(brStore.ToContext(ctx)))
			},
			validator: func(ctx context.Context) context.Context {
				return featureStore.ToContext(chStore.ToContext(pingStore.ToContext(brStore.ToContext(ctx))))
			},
		},
		{
			name: "webhook.kafka.eventing.knative.dev",
			types: map[schema.GroupVersionKind]func() resourcesemantics.GenericCRD{
				gvk(kafkaeventingv1alpha1.SchemeGroupVersion, "KafkaSink"):    func() resourcesemantics.GenericCRD { return &kafkaeventingv1alpha1.KafkaSink{} },
				gvk(kafkasourcesv1beta1.SchemeGroupVersion, "KafkaSource"):    func() resourcesemantics.GenericCRD { return &kafkasourcesv1beta1.KafkaSource{} },
				gvk(kafkasourcesv1.SchemeGroupVersion, "KafkaSource"):         func() resourcesemantics.GenericCRD { return &kafkasourcesv1.KafkaSource{} },
				gvk(kafkamessagingv1beta1.SchemeGroupVersion, "KafkaChannel"): func() resourcesemantics.GenericCRD { return &kafkamessagingv1beta1.KafkaChannel{} },
				gvk(kafkamessagingv1.SchemeGroupVersion, "KafkaChannel"):      func() resourcesemantics.GenericCRD { return &kafkamessagingv1.KafkaChannel{} },
				gvk(eventingv1.SchemeGroupVersion, "Broker"):                  func() resourcesemantics.GenericCRD { return &kafkaeventingv1.BrokerStub{} },
			},
			defaulter: apis.AllowDifferentNamespace,
			validator: func(ctx context.Context) context.Context {
				return apis.AllowDifferentNamespace(featureStore.ToContext(ctx))
			},
		},
	}
}

// finding is one error or warning about one object.
type finding struct {
	Source     string `json:"source"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Webhook    string `json:"webhook"`
	Level      string `json:"level"` // error | warning
	Field      string `json:"field"`
	Message    string `json:"message"`
	Details    string `json:"details,omitempty"`
}

type report struct {
	Validated map[string]int    `json:"validated"` // apiVersion kind -> objects
	Skipped   map[string]int    `json:"skipped"`   // apiVersion kind -> objects
	Reasons   map[string]string `json:"skippedReasons,omitempty"`
	Findings  []finding         `json:"findings"`
	Errors    int               `json:"errors"`
	Warnings  int               `json:"warnings"`
	// With -defaulted: each validated object as the defaulting webhook leaves it (one per webhook).
	Defaulted []json.RawMessage `json:"defaulted,omitempty"`
}

type document struct {
	source string
	raw    []byte // JSON
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func readDocuments(source string, r io.Reader) ([]document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []document
	for {
		chunk, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		raw, err := yaml.YAMLToJSON(chunk)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, len(docs)+1, err)
		}
		if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
			continue
		}
		docs = append(docs, document{source: source, raw: raw})
	}
}

func loadConfig(path string) (map[string]*corev1.ConfigMap, error) {
	cms := map[string]*corev1.ConfigMap{}
	if path == "" {
		return cms, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	docs, err := readDocuments(path, f)
	if err != nil {
		return nil, err
	}
	for _, doc := range docs {
		cm := &corev1.ConfigMap{}
		if err := strictDecode(doc.raw, cm); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if cm.Kind != "ConfigMap" || cm.Namespace == "" || cm.Name == "" {
			return nil, fmt.Errorf("%s: every document must be a ConfigMap with a name and a namespace", path)
		}
		cms[cm.Namespace+"/"+cm.Name] = cm
	}
	return cms, nil
}

// strictDecode decodes as the API server does with strict field validation (kubectl's default):
// case-sensitive, unknown and duplicate fields refused, each named by its full path.
func strictDecode(raw []byte, into interface{}) error {
	strict, err := kjson.UnmarshalStrict(raw, into, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func baseContext() context.Context {
	ctx := logging.WithLogger(context.Background(), zap.NewNop().Sugar())
	return ctx
}

// admit runs one webhook over one document: strict decode, SetDefaults, Validate.
func admit(hook webhook, newObj func() resourcesemantics.GenericCRD, doc document, h header, rep *report) []finding {
	base := finding{
		Source: doc.source, APIVersion: h.APIVersion, Kind: h.Kind,
		Namespace: h.Metadata.Namespace, Name: h.Metadata.Name, Webhook: hook.name,
	}
	obj := newObj()
	if strict, err := kjson.UnmarshalStrict(doc.raw, obj, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields); err != nil || len(strict) > 0 {
		if err != nil {
			strict = []error{err}
		}
		var findings []finding
		for _, e := range strict {
			f := base
			f.Level, f.Field, f.Message = "error", decodeField(e), "decode: "+e.Error()
			findings = append(findings, f)
		}
		return findings
	}
	user := &authenticationv1.UserInfo{Username: "tasktide-deployer"}

	ctx := apis.WithUserInfo(apis.WithinCreate(hook.defaulter(baseContext())), user)
	obj.SetDefaults(ctx)
	if rep.Defaulted != nil {
		if out, err := json.Marshal(obj); err == nil {
			rep.Defaulted = append(rep.Defaulted, out)
		}
	}

	ctx = apis.WithinCreate(apis.WithUserInfo(hook.validator(baseContext()), user))
	var findings []finding
	if fe := obj.Validate(ctx); fe != nil {
		findings = append(findings, fieldErrors(base, fe)...)
	}
	if trigger, ok := obj.(*eventingv1.Trigger); ok && hook.name == "webhook.eventing.knative.dev" {
		findings = append(findings, deliveryOrder(base, trigger)...)
	}
	return findings
}

// The Kafka Trigger reconciler (deliveryOrderFromString) accepts ordered/unordered in any case.
func deliveryOrder(base finding, t *eventingv1.Trigger) []finding {
	value, ok := t.GetAnnotations()[deliveryOrderAnnotation]
	if !ok {
		return nil
	}
	switch kafkasourcesv1.DeliveryOrdering(strings.ToLower(value)) {
	case kafkasourcesv1.Ordered, kafkasourcesv1.Unordered:
		return nil
	}
	f := base
	f.Webhook = "kafka trigger reconciler"
	f.Level = "error"
	f.Field = "metadata.annotations[" + deliveryOrderAnnotation + "]"
	f.Message = fmt.Sprintf("invalid value: %q, expected %q or %q", value, kafkasourcesv1.Ordered, kafkasourcesv1.Unordered)
	return []finding{f}
}

// decodeField names the field of a strict-decoding error (`json: unknown field "foo"`).
func decodeField(err error) string {
	msg := err.Error()
	for _, prefix := range []string{"unknown field ", "duplicate field "} {
		if i := strings.Index(msg, prefix); i >= 0 {
			return strings.Trim(msg[i+len(prefix):], `"`)
		}
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return typeErr.Field
	}
	return ""
}

func fieldErrors(base finding, fe *apis.FieldError) []finding {
	var out []finding
	for _, level := range []apis.DiagnosticLevel{apis.ErrorLevel, apis.WarningLevel} {
		filtered := fe.Filter(level)
		if filtered == nil {
			continue
		}
		for _, e := range filtered.WrappedErrors() {
			f := base
			f.Level = "error"
			if level == apis.WarningLevel {
				f.Level = "warning"
			}
			f.Field = strings.Join(e.Paths, ", ")
			f.Message = e.Message
			f.Details = e.Details
			out = append(out, f)
		}
	}
	return out
}

func isKnativeGroup(group string) bool {
	return group == "knative.dev" || strings.HasSuffix(group, ".knative.dev")
}

func isInternal(group string) bool {
	for _, g := range internalGroups {
		if group == g || strings.HasSuffix(group, "."+g) {
			return true
		}
	}
	return false
}

func run(docs []document, hooks []webhook, rep *report) {
	for _, doc := range docs {
		var h header
		if err := json.Unmarshal(doc.raw, &h); err != nil || h.APIVersion == "" || h.Kind == "" {
			rep.Findings = append(rep.Findings, finding{
				Source: doc.source, Level: "error", Message: "not a Kubernetes object (apiVersion and kind are required)",
			})
			continue
		}
		gv, err := schema.ParseGroupVersion(h.APIVersion)
		if err != nil {
			rep.Findings = append(rep.Findings, finding{
				Source: doc.source, APIVersion: h.APIVersion, Kind: h.Kind, Name: h.Metadata.Name,
				Level: "error", Field: "apiVersion", Message: err.Error(),
			})
			continue
		}
		key := h.APIVersion + " " + h.Kind
		kind := gv.WithKind(h.Kind)
		handled := false
		for _, hook := range hooks {
			if newObj, ok := hook.types[kind]; ok {
				handled = true
				rep.Findings = append(rep.Findings, admit(hook, newObj, doc, h, rep)...)
			}
		}
		switch {
		case handled:
			rep.Validated[key]++
		case notValidated[kind] != "":
			rep.Skipped[key]++
			rep.Reasons[key] = notValidated[kind]
		case isKnativeGroup(gv.Group) && !isInternal(gv.Group):
			rep.Findings = append(rep.Findings, finding{
				Source: doc.source, APIVersion: h.APIVersion, Kind: h.Kind,
				Namespace: h.Metadata.Namespace, Name: h.Metadata.Name, Level: "error", Field: "apiVersion, kind",
				Message: "no Knative webhook of this release serves this kind at this version (no such CRD version on the cluster)",
			})
		default:
			rep.Skipped[key]++
			rep.Reasons[key] = "not a Knative kind"
			if isInternal(gv.Group) {
				rep.Reasons[key] = "Knative internal kind (made by the controllers)"
			}
		}
	}
	for _, f := range rep.Findings {
		if f.Level == "warning" {
			rep.Warnings++
		} else {
			rep.Errors++
		}
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func printText(w io.Writer, rep *report) {
	for _, f := range rep.Findings {
		object := f.Kind + "/" + f.Name
		if f.Namespace != "" {
			object = f.Kind + "/" + f.Namespace + "/" + f.Name
		}
		line := fmt.Sprintf("%s: %s: %s %s", f.Source, f.Level, f.APIVersion, object)
		if f.Webhook != "" {
			line += " [" + f.Webhook + "]"
		}
		if f.Field != "" {
			line += ": field " + f.Field
		}
		line += ": " + f.Message
		if f.Details != "" {
			line += " (" + f.Details + ")"
		}
		fmt.Fprintln(w, line)
	}
	for _, k := range sortedKeys(rep.Validated) {
		fmt.Fprintf(w, "validated: %s (%d)\n", k, rep.Validated[k])
	}
	for _, k := range sortedKeys(rep.Skipped) {
		fmt.Fprintf(w, "skipped: %s (%d): %s\n", k, rep.Skipped[k], rep.Reasons[k])
	}
	objects := 0
	for _, n := range rep.Validated {
		objects += n
	}
	fmt.Fprintf(w, "knative-validate: %d objects validated, %d skipped, %d errors, %d warnings\n",
		objects, sumValues(rep.Skipped), rep.Errors, rep.Warnings)
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func main() {
	configPath := flag.String("config", "", "YAML file of the webhooks' ConfigMaps (namespaces knative-serving, knative-eventing)")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	defaulted := flag.Bool("defaulted", false, "with -json: add every validated object as SetDefaults left it")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-config FILE] [-json [-defaulted]] FILE... (\"-\" or none: stdin)\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()

	cms, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "knative-validate: -config:", err)
		os.Exit(2)
	}
	st := &stores{cms: cms}
	hooks := webhooks(st)
	if len(st.errors) > 0 {
		for _, e := range st.errors {
			fmt.Fprintln(os.Stderr, "knative-validate: -config:", e)
		}
		os.Exit(2)
	}

	paths := flag.Args()
	if len(paths) == 0 {
		paths = []string{"-"}
	}
	var docs []document
	for _, path := range paths {
		var r io.Reader = os.Stdin
		source := "<stdin>"
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				fmt.Fprintln(os.Stderr, "knative-validate:", err)
				os.Exit(2)
			}
			defer f.Close()
			r, source = f, path
		}
		got, err := readDocuments(source, r)
		if err != nil {
			fmt.Fprintln(os.Stderr, "knative-validate:", err)
			os.Exit(2)
		}
		docs = append(docs, got...)
	}

	rep := &report{Validated: map[string]int{}, Skipped: map[string]int{}, Reasons: map[string]string{}, Findings: []finding{}}
	if *defaulted {
		rep.Defaulted = []json.RawMessage{}
	}
	run(docs, hooks, rep)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printText(os.Stdout, rep)
	}
	if rep.Errors > 0 {
		os.Exit(1)
	}
}
