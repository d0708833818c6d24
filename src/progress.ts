// A one-line progress bar on a terminal (redrawn in place), or plain lines at intervals when the
// output is a file or pipe (logs stay readable).
export class Progress {
  private last = 0;
  private readonly start = performance.now();
  constructor(private readonly total: number, private readonly label: string,
    private readonly out: NodeJS.WriteStream = process.stderr, private readonly intervalMs = 10_000) {}

  update(done: number, fields: Record<string, string | number>): void {
    const now = performance.now();
    const tty = this.out.isTTY === true;
    if (!tty && now - this.last < this.intervalMs && done < this.total) return;
    if (tty && now - this.last < 100 && done < this.total) return;
    this.last = now;
    const sec = (now - this.start) / 1000;
    const eta = done > 0 ? (sec * (this.total - done)) / done : NaN;
    const width = 24, filled = Math.round((width * done) / Math.max(1, this.total));
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
    const extra = Object.entries(fields).map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v) : v}`).join('  ');
    const line = `${this.label} [${bar}] ${done}/${this.total}  ${extra}  ${fmtTime(sec)} elapsed, ${fmtTime(eta)} left`;
    this.out.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    if (tty && done >= this.total) this.out.write('\n');
  }
}

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(4);
}

export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h > 0 ? `${h}h${String(m % 60).padStart(2, '0')}m` : m > 0 ? `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s` : `${s.toFixed(1)}s`;
}
