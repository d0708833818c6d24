#!/usr/bin/env python3
"""CUDA emulation (native/tests/cuda_emu/README.md): turns a .cu file into C++ for the emulator.

  launch.py IN.cu OUT.cc

Four rewrites, nothing else (line numbers are kept, and a #line directive names the original file,
so compiler messages and __FILE__ point at the .cu):
  kernel<<<grid, block[, smem[, stream]]>>>(args)  ->  emu_launch(kernel, "kernel", grid, block, smem, stream, args)
  extern __shared__ [__align__(n)] T name[];       ->  T* name = reinterpret_cast<T*>(::emu::dynamic_smem());
  __shared__ T a[n], b;                             ->  the same, then EMU_POISON_SHARED(a); EMU_POISON_SHARED(b);
                                                        on the same line (cuda_runtime.h: the first thread of each
                                                        block to get there fills them with 0xff bytes, as shared
                                                        memory starts as garbage on the device)
  [template <...>] __global__ void __launch_bounds__(n) k(...) {
                                                    ->  the same, preceded on its first line by
                                                        static const bool emu_bound_k_ = ::emu::register_bound("k", n);
                                                        so that a launch with more than n threads per block fails, as
                                                        on the GPU. A kernel without __launch_bounds__ is refused: the
                                                        bound is what lets ptxas keep a kernel's registers within what
                                                        its largest block may use.
"""
import os
import re
import sys


def split_top(s):
    """Splits s at commas outside brackets."""
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '([{':
            depth += 1
        elif ch in ')]}':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    parts.append(cur)
    return parts


def closing_paren(src, p):
    """Index of the parenthesis that closes the one at src[p]."""
    depth, q = 0, p
    while True:
        if src[q] == '(':
            depth += 1
        elif src[q] == ')':
            depth -= 1
            if depth == 0:
                return q
        q += 1


def kernel_start(src, end):
    """Index where the kernel expression before src[end] ('<<<') begins: an identifier, possibly
    qualified, possibly with template arguments."""
    i = end
    while True:
        while i > 0 and src[i - 1].isspace():
            i -= 1
        if i > 0 and src[i - 1] == '>':  # template arguments
            depth = 0
            while i > 0:
                i -= 1
                if src[i] == '>':
                    depth += 1
                elif src[i] == '<':
                    depth -= 1
                    if depth == 0:
                        break
        j = i
        while j > 0 and (src[j - 1].isalnum() or src[j - 1] == '_'):
            j -= 1
        if j == i:
            raise SystemExit(f'launch.py: no kernel name before <<< at offset {end}')
        i = j
        if src[i - 2:i] == '::':
            i -= 2
            continue
        return i


def rewrite_launches(src):
    out, pos = [], 0
    while True:
        k = src.find('<<<', pos)
        if k < 0:
            out.append(src[pos:])
            return ''.join(out)
        # skip comments: a '<<<' on a line whose text before it contains '//'
        line_start = src.rfind('\n', 0, k) + 1
        if '//' in src[line_start:k]:
            out.append(src[pos:k + 3])
            pos = k + 3
            continue
        s = kernel_start(src, k)
        kname = src[s:k].strip()
        e = src.find('>>>', k)
        config = src[k + 3:e]
        p = e + 3
        while src[p].isspace():
            p += 1
        if src[p] != '(':
            raise SystemExit(f'launch.py: expected ( after >>> for {kname}')
        q = closing_paren(src, p)  # of the argument list
        args = src[p + 1:q]
        cfg = split_top(config)
        if len(cfg) < 2 or len(cfg) > 4:
            raise SystemExit(f'launch.py: launch of {kname} has {len(cfg)} configuration values')
        while len(cfg) < 4:
            cfg.append(' 0' if len(cfg) == 2 else ' nullptr')
        name = re.sub(r'\s+', '', kname)
        text = f'emu_launch({kname}, "{name}", ' + ','.join(c.replace('\n', ' ') for c in cfg)
        text += (', ' + args) if args.strip() else ''
        text += ')'
        # keep the line count of the original text
        text += '\n' * (src[s:q + 1].count('\n') - text.count('\n'))
        out.append(src[pos:s])
        out.append(text)
        pos = q + 1


DYN = re.compile(r'extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w\s:]*?)\s+([A-Za-z_]\w*)\s*\[\s*\]\s*;')


STATIC = re.compile(r'^(\s*__shared__\s+(?!.*\bextern\b)[A-Za-z_][\w:]*\s+)([^;]*);[ \t]*$', re.M)


def poison_static(m):
    names = [re.match(r'\s*([A-Za-z_]\w*)', d).group(1) for d in split_top(m.group(2))]
    return m.group(0) + ''.join(f' EMU_POISON_SHARED({n});' for n in names)


def line_of(src, i):
    return src.count('\n', 0, i) + 1


def register_bounds(src, path):
    """Registers each kernel's __launch_bounds__ with the emulator (module docstring)."""
    inserts = []
    for m in re.finditer(r'\b__global__\b', src):
        i = m.start()
        line_start = src.rfind('\n', 0, i) + 1
        if '//' in src[line_start:i] or src[line_start:i].lstrip().startswith('#'):
            continue
        brace, semi = src.find('{', i), src.find(';', i)
        if brace < 0 or 0 <= semi < brace:
            continue  # a declaration without a body
        head = src[i:brace]
        lb = re.search(r'__launch_bounds__\s*\(', head)
        rest = head
        bound = None
        if lb:
            q = closing_paren(head, lb.end() - 1)
            bound = split_top(head[lb.end():q])[0].strip()
            rest = head[:lb.start()] + head[q + 1:]
        name = re.search(r'([A-Za-z_]\w*)\s*\(', rest[len('__global__'):])
        if not name:
            raise SystemExit(f'{path}:{line_of(src, i)}: launch.py: cannot find the kernel name')
        name = name.group(1)
        if bound is None:
            raise SystemExit(f'{path}:{line_of(src, i)}: kernel {name} has no __launch_bounds__: declare its largest block '
                             '(ptxas then fits its registers to it, and the emulator checks launches against it)')
        # the line where the kernel's declaration starts: its template header, if any
        start = line_start
        prev_end = line_start - 1
        prev_start = src.rfind('\n', 0, prev_end) + 1 if prev_end > 0 else 0
        if prev_end > 0 and src[prev_start:prev_end].lstrip().startswith('template'):
            start = prev_start
        inserts.append((start, f'[[maybe_unused]] static const bool emu_bound_{name}_{line_of(src, i)} = '
                               f'::emu::register_bound("{name}", (long long)({bound})); '))
    for pos, text in reversed(inserts):
        src = src[:pos] + text + src[pos:]
    return src


def main():
    src_path, out_path = sys.argv[1], sys.argv[2]
    src = open(src_path).read()
    src = DYN.sub(lambda m: f'{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>(::emu::dynamic_smem());', src)
    src = STATIC.sub(poison_static, src)
    src = register_bounds(src, src_path)
    src = rewrite_launches(src)
    # Ninja creates the output's folder; Make does not.
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, 'w') as f:
        f.write(f'#line 1 "{src_path}"\n')
        f.write(src)


main()
