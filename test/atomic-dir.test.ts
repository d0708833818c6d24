// Folder replacement (src/atomic-dir.ts): a process killed at any point of replaceDir leaves a
// folder that recoverDir turns back into one complete version; live processes' files are left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { recoverDir, replaceDir } from '../src/atomic-dir.ts';

const DEAD = 999_999_999;  // above any pid_max (2^22): kill(pid, 0) fails with ESRCH

function folder(path: string, version: string) {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, 'v.txt'), version);
}
const version = (path: string) => readFileSync(join(path, 'v.txt'), 'utf8');

test('replaceDir replaces; recoverDir restores the old version after a kill between the renames', () => {
  const root = mkdtempSync(join(tmpdir(), 'xlir-atomic-'));
  const dir = join(root, 'checkpoint');
  folder(dir, 'v1');
  folder(join(root, 'checkpoint.tmp-a'), 'v2');
  replaceDir(join(root, 'checkpoint.tmp-a'), dir);
  assert.equal(version(dir), 'v2');
  assert.deepEqual(readdirSync(root), ['checkpoint'], 'nothing left beside it');

  // Killed after renaming the old version aside, before the new one went into place: the new one is
  // a half-written .tmp- (deleted), the old one complete (restored).
  renameSync(dir, `${dir}.old-${DEAD}`);
  folder(`${dir}.tmp-${DEAD}`, 'half');
  const did = recoverDir(dir);
  assert.equal(version(dir), 'v2');
  assert.deepEqual(readdirSync(root), ['checkpoint']);
  assert.ok(did.some((l) => /restored .*checkpoint from checkpoint\.old-999999999/.test(l)), did.join('\n'));

  // Killed after the new version went into place, before the old one was deleted: keep the new one.
  folder(`${dir}.old-${DEAD}`, 'v1');
  recoverDir(dir);
  assert.equal(version(dir), 'v2');
  assert.deepEqual(readdirSync(root), ['checkpoint']);

  // Of two old versions the newest is restored; a live process's files are not touched; other
  // names that merely start alike are not either.
  renameSync(dir, `${dir}.old-${DEAD}`);
  folder(`${dir}.old-${DEAD - 1}`, 'v0');
  const t = Date.now() / 1000;
  // (the older one's mtime set back, so "newest" is not decided by creation order alone)
  utimesSync(`${dir}.old-${DEAD - 1}`, t - 100, t - 100);
  folder(`${dir}.tmp-${process.pid}`, 'mine');
  folder(join(root, 'checkpoint-2.old-5'), 'other');
  recoverDir(dir);
  assert.equal(version(dir), 'v2');
  assert.ok(existsSync(`${dir}.tmp-${process.pid}`), 'a live process\'s folder is left alone');
  assert.ok(existsSync(join(root, 'checkpoint-2.old-5')));
  assert.ok(!existsSync(`${dir}.old-${DEAD - 1}`));
  assert.deepEqual(recoverDir(join(root, 'missing', 'x')), [], 'no parent: nothing to do');
});
