// Folders replaced as a whole (a model, a training checkpoint, best/): the new version is written
// complete under DIR.tmp-<pid>, the old one is renamed aside to DIR.old-<pid>, the new one renamed
// into place, and the old one deleted. POSIX has no atomic swap of two non-empty folders, so a
// process killed between the two renames leaves no DIR but a complete DIR.old-<pid>: recoverDir()
// puts that back before DIR is read, so a kill at any moment loses at most the version being
// written. Leftovers of dead processes (a half-written .tmp-, an .old- the new version replaced)
// are deleted; those of a live process (another run writing there now) are left alone.
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fsyncDir } from './safetensors.ts';

export function tmpDirFor(dir: string): string {
  return `${dir}.tmp-${process.pid}`;
}

/** Replaces `dir` by the complete folder `tmp` (see the top): a crash leaves one of the two versions. */
export function replaceDir(tmp: string, dir: string): void {
  const aside = `${dir}.old-${process.pid}`;
  const replacing = existsSync(dir);
  if (replacing) {
    rmSync(aside, { recursive: true, force: true });
    renameSync(dir, aside);
  }
  try {
    renameSync(tmp, dir);
  } catch (e) {
    if (replacing) renameSync(aside, dir);
    throw e;
  }
  fsyncDir(dirname(dir));
  if (replacing) rmSync(aside, { recursive: true, force: true });
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';  // exists, owned by someone else
  }
}

/**
 * Before `dir` is read: restores it from the newest DIR.old-<pid> of a dead process when a kill
 * left it missing (see the top), and deletes dead processes' leftovers. Returns what it did, for logs.
 */
export function recoverDir(dir: string): string[] {
  const parent = dirname(dir), name = basename(dir), done: string[] = [];
  if (!existsSync(parent)) return done;
  const pattern = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(tmp|old)-(\\d+)$`);
  const leftovers = readdirSync(parent)
    .map((f) => ({ f, m: pattern.exec(f) }))
    .filter((x) => x.m && !alive(Number(x.m[2])))
    .map((x) => ({ path: join(parent, x.f), kind: x.m![1], mtime: statSync(join(parent, x.f)).mtimeMs }));
  const olds = leftovers.filter((x) => x.kind === 'old').sort((a, b) => b.mtime - a.mtime);
  if (!existsSync(dir) && olds.length) {
    renameSync(olds[0].path, dir);
    fsyncDir(parent);
    done.push(`restored ${dir} from ${basename(olds[0].path)} (a run was stopped while replacing it)`);
    olds.shift();
  }
  for (const x of [...olds, ...leftovers.filter((y) => y.kind === 'tmp')]) {
    rmSync(x.path, { recursive: true, force: true });
    done.push(`removed ${x.path} (left by a stopped run)`);
  }
  return done;
}
