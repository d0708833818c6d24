// Learning rate per step: linear warm-up from 0 to the peak, then linear decay to 0 at the last
// step (the schedule sentence-transformers and most retrieval fine-tuning use).
export function linearWarmupDecay(step: number, totalSteps: number, warmupSteps: number, peak: number): number {
  if (totalSteps <= 0) throw new Error(`total steps must be positive, got ${totalSteps}`);
  const w = Math.min(Math.max(0, Math.floor(warmupSteps)), totalSteps);
  if (step < w) return (peak * (step + 1)) / w;
  const left = totalSteps - w;
  return left <= 0 ? 0 : peak * Math.max(0, (totalSteps - step) / left);
}
