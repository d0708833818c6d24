// Language codes the training data may carry. One table, so the reader, the converters and the
// held-out-language filter agree on what a code means.
//
// Accepted: the 183 current ISO 639-1 codes, plus the ISO 639-3 (or 639-2/5) codes used by the
// Tatoeba test sets (file names tatoeba.xxx-eng.xxx) and by TyDi QA's languages. Only bare,
// lowercase codes: 'en-US', 'EN' and 'zh_Hans' are refused rather than guessed at, because a
// language sampler keyed on codes would otherwise see 'en' and 'en-US' as two languages.
// Deprecated 639-1 codes (iw, in, ji, jw, mo, sh, bh) are refused for the same reason: each has a
// current code for the same language.

const ISO639_1 = (
  'aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ' +
  'ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ' +
  'ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi ' +
  'mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw ' +
  'sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ' +
  'ur uz ve vi vo wa wo xh yi yo za zh zu'
).split(' ');

// Three-letter code -> the ISO 639-1 code of the same language, or '' where 639-1 has none.
// Individual languages map to their macrolanguage's code where that is what the 639-1 code is used
// for in practice (cmn -> zh, swh -> sw, pes -> fa, lvs -> lv, zsm -> ms); dialects and distinct
// languages that merely sit inside a macrolanguage (arq, arz, yue, wuu) keep their own code,
// since merging them would change what "zero-shot language" means.
const ISO639_3: Record<string, string> = {
  // Tatoeba (LASER v1 test sets), 112 languages + eng
  afr: 'af', amh: 'am', ang: '', ara: 'ar', arq: '', arz: '', ast: '', awa: '', aze: 'az', bel: 'be',
  ben: 'bn', ber: '', bos: 'bs', bre: 'br', bul: 'bg', cat: 'ca', cbk: '', ceb: '', ces: 'cs', cha: 'ch',
  cmn: 'zh', cor: 'kw', csb: '', cym: 'cy', dan: 'da', deu: 'de', dsb: '', dtp: '', ell: 'el', eng: 'en',
  epo: 'eo', est: 'et', eus: 'eu', fao: 'fo', fin: 'fi', fra: 'fr', fry: 'fy', gla: 'gd', gle: 'ga',
  glg: 'gl', gsw: '', heb: 'he', hin: 'hi', hrv: 'hr', hsb: '', hun: 'hu', hye: 'hy', ido: 'io', ile: 'ie',
  ina: 'ia', ind: 'id', isl: 'is', ita: 'it', jav: 'jv', jpn: 'ja', kab: '', kat: 'ka', kaz: 'kk', khm: 'km',
  kor: 'ko', kur: 'ku', kzj: '', lat: 'la', lfn: '', lit: 'lt', lvs: 'lv', mal: 'ml', mar: 'mr', max: '',
  mhr: '', mkd: 'mk', mon: 'mn', nds: '', nld: 'nl', nno: 'nn', nob: 'nb', nov: '', oci: 'oc', orv: '',
  pam: '', pes: 'fa', pms: '', pol: 'pl', por: 'pt', ron: 'ro', rus: 'ru', slk: 'sk', slv: 'sl', spa: 'es',
  sqi: 'sq', srp: 'sr', swe: 'sv', swg: '', swh: 'sw', tam: 'ta', tat: 'tt', tel: 'te', tgl: 'tl', tha: 'th',
  tuk: 'tk', tur: 'tr', tzl: '', uig: 'ug', ukr: 'uk', urd: 'ur', uzb: 'uz', vie: 'vi', war: '', wuu: '',
  xho: 'xh', yid: 'yi', yue: '', zsm: 'ms',
  // TyDi QA's languages not spelled above (Swahili's macrolanguage code)
  swa: 'sw',
};

const TWO = new Set(ISO639_1);

export function isKnownLanguage(code: string): boolean {
  return TWO.has(code) || Object.hasOwn(ISO639_3, code);
}

/** The ISO 639-1 code of a known code where one exists, else the code itself. */
export function canonicalLanguage(code: string): string {
  return Object.hasOwn(ISO639_3, code) && ISO639_3[code] !== '' ? ISO639_3[code] : code;
}

/** A hint for a refused code ('EN' -> 'en', 'en-US' -> 'en'), or '' when none is obvious. */
export function languageHint(code: string): string {
  const base = code.toLowerCase().split(/[-_]/)[0];
  return base !== code && isKnownLanguage(base) ? base : '';
}

export const ISO639_1_CODES: readonly string[] = ISO639_1;
export const ISO639_3_CODES: readonly string[] = Object.keys(ISO639_3);

// TyDi QA file names and question-id prefixes name languages in English.
export const TYDI_LANGUAGE_NAMES: Readonly<Record<string, string>> = {
  arabic: 'ar', bengali: 'bn', english: 'en', finnish: 'fi', indonesian: 'id', japanese: 'ja',
  korean: 'ko', russian: 'ru', swahili: 'sw', telugu: 'te', thai: 'th',
};
