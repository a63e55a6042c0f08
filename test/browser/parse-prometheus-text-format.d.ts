// The package ships no types: what the browser test reads of its result.
declare module 'parse-prometheus-text-format' {
  interface ParsedMetric {
    labels?: Record<string, string>;
    value?: string;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }
  export default function parsePrometheusTextFormat(text: string): Array<{ name: string; help: string; type: string; metrics: ParsedMetric[] }>;
}
