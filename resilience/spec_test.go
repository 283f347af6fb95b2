package resilience

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/internal/yamlx"
)

func wantFieldErr(t *testing.T, err error, field string) {
	t.Helper()
	var fe *yamlx.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *yamlx.FieldError", err, err)
	}
	if fe.Field != field {
		t.Fatalf("error names field %q, want %q: %v", fe.Field, field, err)
	}
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("error %v does not wrap ErrInvalidSpec", err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Fatalf("message %q does not name %q", err, field)
	}
}

func TestDefaultsAreValid(t *testing.T) {
	for _, s := range []specType{&BreakerSpec{}, &LimiterSpec{}, &RetrySpec{}, &TimeLimitSpec{}} {
		s.SetDefaults()
		if err := s.Validate(); err != nil {
			t.Errorf("%T defaults: %v", s, err)
		}
	}
	var b BreakerSpec
	b.SetDefaults()
	want := BreakerSpec{CountBased, 50, 100, 60 * time.Second, 100, 100, 10, 60 * time.Second, 0}
	if b != want {
		t.Errorf("breaker defaults = %+v", b)
	}
	var l LimiterSpec
	l.SetDefaults()
	if l != (LimiterSpec{10 * time.Millisecond, 50, 100 * time.Millisecond, 0}) || l.burst() != 50 {
		t.Errorf("limiter defaults = %+v", l)
	}
	var r RetrySpec
	r.SetDefaults()
	if r != (RetrySpec{3, 500 * time.Millisecond, "exponential", 0.5, 10 * time.Second, 0.2, 3, 10 * time.Second}) {
		t.Errorf("retry defaults = %+v", r)
	}
}

func TestSpecValidationNamesTheField(t *testing.T) {
	breaker := func(f func(*BreakerSpec)) specType {
		var s BreakerSpec
		s.SetDefaults()
		f(&s)
		return &s
	}
	limiter := func(f func(*LimiterSpec)) specType {
		var s LimiterSpec
		s.SetDefaults()
		f(&s)
		return &s
	}
	retry := func(f func(*RetrySpec)) specType {
		var s RetrySpec
		s.SetDefaults()
		f(&s)
		return &s
	}
	tests := []struct {
		field string
		spec  specType
	}{
		{"slidingWindowType", breaker(func(s *BreakerSpec) { s.SlidingWindowType = "count" })},
		{"failureRateThreshold", breaker(func(s *BreakerSpec) { s.FailureRateThreshold = 0 })},
		{"failureRateThreshold", breaker(func(s *BreakerSpec) { s.FailureRateThreshold = 101 })},
		{"slowCallRateThreshold", breaker(func(s *BreakerSpec) { s.SlowCallRateThreshold = -5 })},
		{"slowCallDurationThreshold", breaker(func(s *BreakerSpec) { s.SlowCallDurationThreshold = 0 })},
		{"slidingWindowSize", breaker(func(s *BreakerSpec) { s.SlidingWindowSize = 0 })},
		{"slidingWindowSize", breaker(func(s *BreakerSpec) { s.SlidingWindowSize = 2_000_000 })},
		{"slidingWindowSize", breaker(func(s *BreakerSpec) { s.SlidingWindowType, s.SlidingWindowSize = TimeBased, 100_000 })},
		{"minimumNumberOfCalls", breaker(func(s *BreakerSpec) { s.MinimumNumberOfCalls = 0 })},
		{"permittedNumberOfCallsInHalfOpenState", breaker(func(s *BreakerSpec) { s.PermittedNumberOfCallsInHalfOpenState = 0 })},
		{"waitDurationInOpenState", breaker(func(s *BreakerSpec) { s.WaitDurationInOpenState = 0 })},
		{"maxWaitDurationInHalfOpenState", breaker(func(s *BreakerSpec) { s.MaxWaitDurationInHalfOpenState = -1 })},
		{"limitRefreshPeriod", limiter(func(s *LimiterSpec) { s.LimitRefreshPeriod = 0 })},
		{"limitForPeriod", limiter(func(s *LimiterSpec) { s.LimitForPeriod = 0 })},
		{"timeoutDuration", limiter(func(s *LimiterSpec) { s.TimeoutDuration = -time.Second })},
		{"burst", limiter(func(s *LimiterSpec) { s.Burst = -1 })},
		{"burst", limiter(func(s *LimiterSpec) { s.LimitRefreshPeriod, s.LimitForPeriod, s.Burst = 1000*time.Hour, 1, 1<<40 })},
		{"maxAttempts", retry(func(s *RetrySpec) { s.MaxAttempts = 0 })},
		{"waitDuration", retry(func(s *RetrySpec) { s.WaitDuration = -1 })},
		{"backOffPolicy", retry(func(s *RetrySpec) { s.BackOffPolicy = "linear" })},
		{"randomizationFactor", retry(func(s *RetrySpec) { s.RandomizationFactor = 1.5 })},
		{"maxWaitDuration", retry(func(s *RetrySpec) { s.MaxWaitDuration = -1 })},
		{"budgetRatio", retry(func(s *RetrySpec) { s.BudgetRatio = -0.1 })},
		{"budgetRatio", retry(func(s *RetrySpec) { s.BudgetRatio, s.MinRetriesPerSecond = 0, 0 })},
		{"minRetriesPerSecond", retry(func(s *RetrySpec) { s.MinRetriesPerSecond = -1 })},
		{"budgetWindow", retry(func(s *RetrySpec) { s.BudgetWindow = 0 })},
		{"timeout", &TimeLimitSpec{Timeout: -1}},
		{"perTryTimeout", &TimeLimitSpec{PerTryTimeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			wantFieldErr(t, tt.spec.Validate(), tt.field)
		})
	}
}

func TestConstructorsValidate(t *testing.T) {
	var b BreakerSpec
	_, err := NewBreaker(b, nil, nil) // a zero spec is not the defaults
	wantFieldErr(t, err, "failureRateThreshold")
	_, err = NewLimiter(LimiterSpec{}, nil)
	wantFieldErr(t, err, "limitRefreshPeriod")
	var l LimiterSpec
	l.SetDefaults()
	_, err = NewKeyedLimiter(l, nil, 0)
	wantFieldErr(t, err, "maxKeys")
	_, err = NewKeyedLimiter(LimiterSpec{}, nil, 10)
	wantFieldErr(t, err, "limitRefreshPeriod")
	_, err = NewRetry(RetrySpec{}, nil, nil)
	wantFieldErr(t, err, "maxAttempts")
}

// TestSpecYAML decodes Easegress-style YAML through yamlx, the way the
// pipeline will, and checks the values, the field names and the line of a
// validation error.
func TestSpecYAML(t *testing.T) {
	decode := func(t *testing.T, src string, s specType) error {
		t.Helper()
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(src), &n); err != nil {
			t.Fatal(err)
		}
		s.SetDefaults()
		if err := yamlx.Decode(&n, s); err != nil {
			return err
		}
		return yamlx.Validate(&n, s)
	}

	var b BreakerSpec
	err := decode(t, `
slidingWindowType: TIME_BASED
failureRateThreshold: 60
slowCallRateThreshold: 90
slowCallDurationThreshold: 2s
slidingWindowSize: 30
minimumNumberOfCalls: 5
permittedNumberOfCallsInHalfOpenState: 2
waitDurationInOpenState: 10s
maxWaitDurationInHalfOpenState: 5s
`, &b)
	if err != nil {
		t.Fatal(err)
	}
	if b != (BreakerSpec{TimeBased, 60, 90, 2 * time.Second, 30, 5, 2, 10 * time.Second, 5 * time.Second}) {
		t.Fatalf("decoded %+v", b)
	}

	var l LimiterSpec
	if err := decode(t, "limitForPeriod: 10\nlimitRefreshPeriod: 1s\ntimeoutDuration: 0s\n", &l); err != nil {
		t.Fatal(err)
	}
	if l != (LimiterSpec{time.Second, 10, 0, 0}) || l.burst() != 10 {
		t.Fatalf("decoded %+v: an explicit 0s timeout must stay 0", l)
	}

	var r RetrySpec
	if err := decode(t, "maxAttempts: 5\nwaitDuration: 100ms\nbackOffPolicy: random\nrandomizationFactor: 0.3\n", &r); err != nil {
		t.Fatal(err)
	}
	if r.MaxAttempts != 5 || r.WaitDuration != 100*time.Millisecond || r.BackOffPolicy != "random" || r.RandomizationFactor != 0.3 || r.BudgetRatio != 0.2 {
		t.Fatalf("decoded %+v", r)
	}

	var tl TimeLimitSpec
	if err := decode(t, "timeout: 3s\nperTryTimeout: 1s\n", &tl); err != nil || tl != (TimeLimitSpec{3 * time.Second, time.Second}) {
		t.Fatalf("decoded %+v, %v", tl, err)
	}

	err = decode(t, "slidingWindowSize: 10\nfailureRateThreshold: 150\n", &b)
	var fe *yamlx.FieldError
	if !errors.As(err, &fe) || fe.Field != "failureRateThreshold" || fe.Line != 2 {
		t.Fatalf("error = %v; want field failureRateThreshold on line 2", err)
	}
	err = decode(t, "failureRateThresold: 50\n", &b)
	if !errors.Is(err, yamlx.ErrUnknownField) {
		t.Fatalf("a misspelt field: %v", err)
	}
}

// TestSpecTags checks the YAML names against the Easegress v2 names (and
// ours), so that a typo in a tag cannot slip through, and that the defaults
// survive a YAML round trip.
func TestSpecTags(t *testing.T) {
	want := map[reflect.Type][]string{
		reflect.TypeFor[BreakerSpec](): {"slidingWindowType", "failureRateThreshold", "slowCallRateThreshold",
			"slowCallDurationThreshold", "slidingWindowSize", "minimumNumberOfCalls",
			"permittedNumberOfCallsInHalfOpenState", "waitDurationInOpenState", "maxWaitDurationInHalfOpenState"},
		reflect.TypeFor[LimiterSpec](): {"limitRefreshPeriod", "limitForPeriod", "timeoutDuration", "burst"},
		reflect.TypeFor[RetrySpec](): {"maxAttempts", "waitDuration", "backOffPolicy", "randomizationFactor",
			"maxWaitDuration", "budgetRatio", "minRetriesPerSecond", "budgetWindow"},
		reflect.TypeFor[TimeLimitSpec](): {"timeout", "perTryTimeout"},
	}
	for typ, names := range want {
		var got []string
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			got = append(got, name)
		}
		if !slices.Equal(got, names) {
			t.Errorf("%v yaml names = %q, want %q", typ, got, names)
		}

		v := reflect.New(typ)
		v.Interface().(specType).SetDefaults()
		out, err := yaml.Marshal(v.Interface())
		if err != nil {
			t.Fatal(err)
		}
		back := reflect.New(typ)
		var n yaml.Node
		if err := yaml.Unmarshal(out, &n); err != nil {
			t.Fatal(err)
		}
		if err := yamlx.Decode(&n, back.Interface()); err != nil {
			t.Fatalf("%v: round trip of %s: %v", typ, out, err)
		}
		if !reflect.DeepEqual(v.Interface(), back.Interface()) {
			t.Errorf("%v: round trip of the defaults gave %+v", typ, back.Elem())
		}
	}
}
