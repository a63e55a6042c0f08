// Probation: after a watched upgrade has switched, the new release is watched for `probationMs`.
// A service whose health() fails, or whose new worker crashes, is the verdict against it. A new
// worker that crashes is not restarted meanwhile (the kernel holds it, crashed, for the revert),
// so the verdict never races supervision; and probation ends in the same synchronous step as its
// last check, so a crash cannot fall between the two. Runs in the kernel's main thread.

/** What probation needs of the kernel. */
export interface ProbationKernel {
  readonly services: string[];
  health(service: string): Promise<{ healthy: boolean; reason?: string }>;
  probationCrashes(): Array<{ service: string; reason: string }>;
  onProbationCrash(listener: (service: string, reason: string) => void): () => void;
  /** Ends probation if nothing crashed (returns []), else returns the crashes and changes nothing. */
  endProbation(): Array<{ service: string; reason: string }>;
}

/** The first unhealthy or crashed service within `windowMs`, with why; null when all passed. */
export async function watchProbation(kernel: ProbationKernel, windowMs: number): Promise<{ service: string; reason: string } | null> {
  if (windowMs <= 0) return null;
  const until = performance.now() + windowMs;
  const interval = Math.max(10, Math.min(100, windowMs / 5));
  const crashVerdict = (crash: { service: string; reason: string }) => ({ service: crash.service, reason: `its worker crashed during probation (${crash.reason})` });
  let wake = () => {};
  const stopListening = kernel.onProbationCrash(() => wake());
  try {
    for (;;) {
      const crash = kernel.probationCrashes()[0];
      if (crash) return crashVerdict(crash);
      for (const service of kernel.services) {
        const { healthy, reason } = await kernel.health(service);
        if (!healthy) return { service, reason: reason ?? 'unhealthy' };
      }
      if (performance.now() >= until) {
        const late = kernel.endProbation()[0];
        return late ? crashVerdict(late) : null;
      }
      // Until the next poll, or at once when a service crashes.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, interval);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    stopListening();
  }
}
