"""The HTML normaliser's state machine in Python: the reference for the C port.

``vigil.engine.htmlnorm`` runs the same machine in C (``vigil.native._htmlnorm``); the tests
compare the two, byte for byte, on ClamAV's reference pages and on generated and mutated
ones. Nothing on the scan path imports this module.

How this stays reasonably fast in Python: each state of ClamAV's byte-at-a-time state
machine takes a whole run of bytes per step, found with a compiled regex or bytes.find, and
byte-level work (case folding, Script Encoder decryption, 8-bit sequences) uses translate
and slicing. The remaining steps are per tag, attribute, entity or JS token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from vigil.engine._jsnorm_py import _JsNormaliser
from vigil.engine.htmlnorm import _JS_BUFFER, _WS, HtmlForms, _lower

__all__ = ["normalise_html"]

_WS_SET = frozenset(_WS)
_WS_RUN = re.compile(rb"[\t\n\x0b\x0c\r ]*")

# --------------------------------------------------------------------------- HTML tables

# ClamAV's entity table (ISO 8879 / HTML 4 names, case-sensitive): name=hex code point.
_ENTITY_DATA = (
    "AElig=c6 Aacgr=386 Aacute=c1 Acirc=c2 Acy=410 Agr=391 Agrave=c0 Alpha=391 Aring=c5 Atilde=c3 "
    "Auml=c4 Barwed=2306 Bcy=411 Beta=392 Bgr=392 CHcy=427 Cap=22d2 Ccedil=c7 Chi=3a7 Cup=22d3 "
    "DJcy=402 DScy=405 DZcy=40f Dagger=2021 Dcy=414 Delta=394 Dgr=394 Dot=a8 DotDot=20dc "
    "EEacgr=389 EEgr=397 ETH=d0 Eacgr=388 Eacute=c9 Ecirc=ca Ecy=42d Egr=395 Egrave=c8 "
    "Epsilon=395 Eta=397 Euml=cb Fcy=424 GJcy=403 Gamma=393 Gcy=413 Gg=22d9 Ggr=393 Gt=226b "
    "HARDcy=42a IEcy=415 IOcy=401 Iacgr=38a Iacute=cd Icirc=ce Icy=418 Idigr=3aa Igr=399 "
    "Igrave=cc Iota=399 Iukcy=406 Iuml=cf Jcy=419 Jsercy=408 Jukcy=404 KHcy=425 KHgr=3a7 KJcy=40c "
    "Kappa=39a Kcy=41a Kgr=39a LJcy=409 Lambda=39b Lcy=41b Lgr=39b Ll=22d8 Lt=226a Mcy=41c "
    "Mgr=39c Mu=39c NJcy=40a Ncy=41d Ngr=39d Ntilde=d1 Nu=39d OElig=152 OHacgr=38f OHgr=3a9 "
    "Oacgr=38c Oacute=d3 Ocirc=d4 Ocy=41e Ogr=39f Ograve=d2 Omega=3a9 Omicron=39f Oslash=d8 "
    "Otilde=d5 Ouml=d6 PHgr=3a6 PSgr=3a8 Pcy=41f Pgr=3a0 Phi=3a6 Pi=3a0 Prime=2033 Psi=3a8 "
    "Rcy=420 Rgr=3a1 Rho=3a1 SHCHcy=429 SHcy=428 SOFTcy=42c Scaron=160 Scy=421 Sgr=3a3 Sigma=3a3 "
    "Sub=22d0 Sup=22d1 THORN=de THgr=398 TSHcy=40b TScy=426 Tau=3a4 Tcy=422 Tgr=3a4 Theta=398 "
    "Uacgr=38e Uacute=da Ubrcy=40e Ucirc=db Ucy=423 Udigr=3ab Ugr=3a5 Ugrave=d9 Upsi=3d2 "
    "Upsilon=3a5 Uuml=dc Vcy=412 Vdash=22a9 Verbar=2016 Vvdash=22aa Xgr=39e Xi=39e YAcy=42f "
    "YIcy=407 YUcy=42e Yacute=dd Ycy=42b Yuml=178 ZHcy=416 Zcy=417 Zeta=396 Zgr=396 aacgr=3ac "
    "aacute=e1 acirc=e2 acute=b4 acy=430 aelig=e6 agr=3b1 agrave=e0 alefsym=2135 aleph=2135 "
    "alpha=3b1 amalg=2a3f amp=26 and=2227 ang=2220 ang90=221f angmsd=2221 angsph=2222 angst=212b "
    "ap=2248 ape=224a apos=27 aring=e5 ast=2a asymp=2248 atilde=e3 auml=e4 barwed=2305 bcong=224c "
    "bcy=431 bdquo=201e becaus=2235 bepsi=3f6 bernou=212c beta=3b2 beth=2136 bgr=3b2 blank=2423 "
    "blk12=2592 blk14=2591 blk34=2593 block=2588 bottom=22a5 bowtie=22c8 boxDL=2557 boxDR=2554 "
    "boxDl=2556 boxDr=2553 boxH=2550 boxHD=2566 boxHU=2569 boxHd=2564 boxHu=2567 boxUL=255d "
    "boxUR=255a boxUl=255c boxUr=2559 boxV=2551 boxVH=256c boxVL=2563 boxVR=2560 boxVh=256b "
    "boxVl=2562 boxVr=255f boxdL=2555 boxdR=2552 boxdl=2510 boxdr=250c boxh=2500 boxhD=2565 "
    "boxhU=2568 boxhd=252c boxhu=2534 boxuL=255b boxuR=2558 boxul=2518 boxur=2514 boxv=2502 "
    "boxvH=256a boxvL=2561 boxvR=255e boxvh=253c boxvl=2524 boxvr=251c bprime=2035 breve=2d8 "
    "brvbar=a6 bsim=223d bsime=22cd bsol=5c bull=2022 bump=224e bumpe=224f cap=2229 caret=2041 "
    "caron=2c7 ccedil=e7 cedil=b8 cent=a2 chcy=447 check=2713 chi=3c7 cir=25cb circ=2c6 cire=2257 "
    "clubs=2663 colon=3a colone=2254 comma=2c commat=40 comp=2201 compfn=2218 cong=2245 "
    "conint=222e coprod=2210 copy=a9 copysr=2117 crarr=21b5 cross=2717 cuepr=22de cuesc=22df "
    "cup=222a cupre=227c curren=a4 cuvee=22ce cuwed=22cf dArr=21d3 dagger=2020 daleth=2138 "
    "darr=2193 dash=2010 dashv=22a3 dblac=2dd dcy=434 deg=b0 delta=3b4 dgr=3b4 diam=22c4 "
    "diams=2666 die=a8 divide=f7 divonx=22c7 djcy=452 dlcorn=231e dlcrop=230d dollar=24 dot=2d9 "
    "drcorn=231f drcrop=230c dscy=455 dtri=25bf dtrif=25be dzcy=45f eDot=2251 eacgr=3ad eacute=e9 "
    "ecir=2256 ecirc=ea ecolon=2255 ecy=44d eeacgr=3ae eegr=3b7 efDot=2252 egr=3b5 egrave=e8 "
    "egs=2a96 ell=2113 els=2a95 empty=2205 emsp=2003 emsp13=2004 emsp14=2005 ensp=2002 epsi=3f5 "
    "epsilon=3b5 epsis=3f5 epsiv=3b5 equals=3d equiv=2261 erDot=2253 esdot=2250 eta=3b7 eth=f0 "
    "euml=eb euro=20ac excl=21 exist=2203 fcy=444 female=2640 ffilig=fb03 fflig=fb00 ffllig=fb04 "
    "filig=fb01 flat=266d fllig=fb02 fnof=192 forall=2200 fork=22d4 frac12=bd frac13=2153 "
    "frac14=bc frac15=2155 frac16=2159 frac18=215b frac23=2154 frac25=2156 frac34=be frac35=2157 "
    "frac38=215c frac45=2158 frac56=215a frac58=215d frac78=215e frasl=2044 frown=2322 gE=2267 "
    "gEl=2a8c gamma=3b3 gammad=3dd gap=2a86 gcy=433 ge=2265 gel=22db ges=2a7e ggr=3b3 gimel=2137 "
    "gjcy=453 gl=2277 grave=60 gsdot=22d7 gsim=2273 gt=3e hArr=21d4 hairsp=200a half=bd "
    "hamilt=210b hardcy=44a harr=2194 hearts=2665 hellip=2026 horbar=2015 hybull=2043 hyphen=2010 "
    "iacgr=3af iacute=ed icirc=ee icy=438 idiagr=390 idigr=3ca iecy=435 iexcl=a1 iff=21d4 igr=3b9 "
    "igrave=ec image=2111 incare=2105 infin=221e inodot=131 int=222b intcal=22ba iocy=451 "
    "iota=3b9 iquest=bf isin=2208 iukcy=456 iuml=ef jcy=439 jnodot=6a jsercy=458 jukcy=454 "
    "kappa=3ba kappav=3f0 kcy=43a kgr=3ba khcy=445 khgr=3c7 kjcy=45c lArr=21d0 lE=2266 lEg=2a8b "
    "lagran=2112 lambda=3bb lang=2329 lap=2a85 laquo=ab larr=2190 lceil=2308 lcub=7b lcy=43b "
    "ldot=22d6 ldquo=201c ldquor=201e le=2264 leg=22da les=2a7d lfloor=230a lg=2276 lgr=3bb "
    "lhblk=2584 ljcy=459 lowast=2217 lowbar=5f loz=25ca lozf=29eb lpar=28 lpargt=29a0 lrm=200e "
    "lsaquo=2039 lsim=2272 lsqb=5b lsquo=2018 lsquor=201a lt=3c lthree=22cb ltimes=22c9 ltri=25c3 "
    "ltrie=22b4 ltrif=25c2 macr=af male=2642 malt=2720 marker=25ae mcy=43c mdash=2014 mgr=3bc "
    "micro=b5 mid=2223 middot=b7 minus=2212 minusb=229f mldr=2026 mnplus=2213 models=22a7 mu=3bc "
    "nabla=2207 natur=266e nbsp=a0 ncy=43d ndash=2013 ne=2260 nexist=2204 ngr=3bd ni=220b "
    "njcy=45a nldr=2025 not=ac notin=2209 nsub=2284 ntilde=f1 nu=3bd num=23 numero=2116 "
    "numsp=2007 oS=24c8 oacgr=3cc oacute=f3 oast=229b ocir=229a ocirc=f4 ocy=43e odash=229d "
    "odot=2299 oelig=153 ogon=2db ogr=3bf ograve=f2 ohacgr=3ce ohgr=3c9 ohm=2126 oline=203e "
    "omega=3c9 omicron=3bf ominus=2296 oplus=2295 or=2228 order=2134 ordf=aa ordm=ba oslash=f8 "
    "osol=2298 otilde=f5 otimes=2297 ouml=f6 par=2225 para=b6 part=2202 pcy=43f percnt=25 "
    "period=2e permil=2030 perp=22a5 pgr=3c0 phgr=3c6 phi=3c6 phis=3d5 phiv=3c6 phmmat=2133 "
    "phone=260e pi=3c0 piv=3d6 planck=210f plus=2b plusb=229e plusdo=2214 plusmn=b1 pound=a3 "
    "pr=227a prap=2ab7 pre=2aaf prime=2032 prod=220f prop=221d prsim=227e psgr=3c8 psi=3c8 "
    "puncsp=2008 quest=3f quot=22 rArr=21d2 radic=221a rang=232a raquo=bb rarr=2192 rceil=2309 "
    "rcub=7d rcy=440 rdquo=201d rdquor=201d real=211c rect=25ad reg=ae rfloor=230b rgr=3c1 "
    "rho=3c1 rhov=3f1 ring=2da rlm=200f rpar=29 rpargt=2994 rsaquo=203a rsqb=5d rsquo=2019 "
    "rsquor=2019 rthree=22cc rtimes=22ca rtri=25b9 rtrie=22b5 rtrif=25b8 rx=211e samalg=2210 "
    "sbquo=201a sbsol=fe68 sc=227b scap=2ab8 scaron=161 sccue=227d sce=2ab0 scsim=227f scy=441 "
    "sdot=22c5 sdotb=22a1 sect=a7 semi=3b setmn=2216 sext=2736 sfgr=3c2 sfrown=2322 sgr=3c3 "
    "sharp=266f shchcy=449 shcy=448 shy=ad sigma=3c3 sigmaf=3c2 sigmav=3c2 sim=223c sime=2243 "
    "smid=2223 smile=2323 softcy=44c sol=2f spades=2660 spar=2225 sqcap=2293 sqcup=2294 "
    "sqsub=228f sqsube=2291 sqsup=2290 sqsupe=2292 squ=25a1 square=25a1 squf=25aa ssetmn=2216 "
    "ssmile=2323 sstarf=22c6 star=2606 starf=2605 sub=2282 subE=2ac5 sube=2286 sum=2211 sung=266a "
    "sup=2283 sup1=b9 sup2=b2 sup3=b3 supE=2ac6 supe=2287 szlig=df target=2316 tau=3c4 tcy=442 "
    "tdot=20db telrec=2315 tgr=3c4 there4=2234 theta=3b8 thetas=3b8 thetasym=3d1 thetav=3d1 "
    "thgr=3b8 thinsp=2009 thkap=2248 thksim=223c thorn=fe tilde=2dc times=d7 timesb=22a0 top=22a4 "
    "tprime=2034 trade=2122 trie=225c tscy=446 tshcy=45b twixt=226c uArr=21d1 uacgr=3cd uacute=fa "
    "uarr=2191 ubrcy=45e ucirc=fb ucy=443 udiagr=3b0 udigr=3cb ugr=3c5 ugrave=f9 uhblk=2580 "
    "ulcorn=231c ulcrop=230f uml=a8 uplus=228e upsi=3c5 upsih=3d2 upsilon=3c5 urcorn=231d "
    "urcrop=230e utri=25b5 utrif=25b4 uuml=fc vDash=22a8 vcy=432 vdash=22a2 veebar=22bb "
    "vellip=22ee verbar=7c vltri=22b2 vprime=2032 vprop=221d vrtri=22b3 wedgeq=2259 weierp=2118 "
    "wreath=2240 xcirc=25ef xdtri=25bd xgr=3be xi=3be xutri=25b3 yacute=fd yacy=44f ycy=44b "
    "yen=a5 yicy=457 yucy=44e yuml=ff zcy=437 zeta=3b6 zgr=3b6 zhcy=436 zwj=200d zwnj=200c "
)
_ENTITIES: dict[bytes, int] = {
    name.encode(): int(cp, 16)
    for name, _, cp in (item.partition("=") for item in _ENTITY_DATA.split())
}

# The Microsoft Script Encoder substitution (decoded char = TABLES[ORDER[i % 64]][char]);
# '@' (mapped to 0xFF) introduces the escapes in _SCRENC_ESCAPES.
_SCRENC_TABLES = tuple(
    bytes.fromhex(t) + bytes(range(128, 256))
    for t in (
        "000102030405060708570a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2e477a56426a2f2649413432"
        "5b7672433839704568714f09624423753c7e3e5eff774a615d224b6f4e3b4c50672a7d74542b2d2c306e6b66"
        "352521644d52633f7b7829287359337f6d55537c3a5f65465831696c5a48275c3d24793760512036",
        "0001020304050607087b0a0b0c0d0e0f101112131415161718191a1b1c1d1e1f323021295b38333d583a3565"
        "395c5673664e456b6259785e7d4a6d713c603e53ff422748727531374d5222546a47642d207f2e4c5d7e6c6f"
        "797443267625242b28234134092a443f773b55696163506751494f46687c36706e7a2f5f4b5a2c57",
        "0001020304050607086e0a0b0c060e0f101112131415161718191a1b1c1d1e1f2d755260715e495c627d2936"
        "207c7a7f6b63332b68516676316454433c3a3e7eff452c2a7427374479592f6f26726a397b3f387767534734"
        "785d30235a5b6c485570692e4c21244e5009567335614b583b57226d4d2528464a32413d5f4f4265",
    )
)
_SCRENC_ORDER = tuple(
    int(d) for d in "0210212112120121012100211201211200121210100210120121002110021012"
)
_SCRENC_ESCAPES = {0x21: 0x3C, 0x23: 0x0D, 0x24: 0x40, 0x26: 0x0A, 0x2A: 0x3E}
_B64 = [-1] * 256
for _i, _c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"):
    _B64[_c] = _i

# Multi-byte sequences ClamAV writes as '.' (ideographic and fullwidth full stops).
_DOT_SEQUENCES = (b"\xe3\x80\x82", b"\xef\xbc\x8e", b"\xef\xb9\x92")
_ALIGNED_DOT = re.compile(rb"(?:[\x80-\xff]{3})*?(?:\xe3\x80\x82|\xef\xbc\x8e|\xef\xb9\x92)")
_GROUP3 = re.compile(rb"[\x80-\xff]{3}")

_STR_LENGTH = 1024  # ClamAV keeps this much of a tag name, attribute name or value
_CHUNK = 8191  # cli_readchunk(..., 8192) hands over at most 8191 bytes at a time
_INT64_MAX = (1 << 63) - 1

_NON_NUL_RUN = re.compile(rb"[^\x00]+")
_HIGH_RUN = re.compile(rb"[\x80-\xff]*")
_TEXT_RUN = re.compile(rb"[^<&\t\n\x0b\x0c\r \x80-\xff]+")
# Words and the whitespace between them, ending on a word; CR may sit anywhere but at the
# start of a word (it is dropped, as ClamAV skips it).
_TEXT_SPAN = re.compile(
    rb"[^<&\t\n\x0b\x0c \x80-\xff]+"
    rb"(?:[\t\n\x0b\x0c\r ]+[^<&\t\n\x0b\x0c\r \x80-\xff][^<&\t\n\x0b\x0c \x80-\xff]*)*"
)
_SPACES = re.compile(rb"[\t\n\x0b\x0c ]+")
_TEXT_GAPS = re.compile(rb"[\x00-\x08\x0e-\x1f\t\n\x0b\x0c ]+")
_CTRL = re.compile(rb"[\x00-\x08\x0e-\x1f]")
_CTRL_RUN = re.compile(rb"[\x00-\x08\x0e-\x1f]+")
_TAG_RUN = re.compile(rb"[^\t\n\x0b\x0c\r >]+")
_ARG_RUN = re.compile(rb"[^=\t\n\x0b\x0c\r >]+")
_VAL_RUN = re.compile(rb"[^&'\"\t\n\x0b\x0c\r >\x80-\xff]+")
# Attribute values that need none of the value state's special cases, taken in one step.
_QUOTED_VALUE = re.compile(rb"([\"'])([^&'\"\t\n\x0b\x0c\r >\x80-\xff]*)\1")
_BARE_VALUE = re.compile(rb"[^&'\"\t\n\x0b\x0c\r >\x80-\xff]+(?=[\t\n\x0b\x0c >])")
_TYPE_RUN = re.compile(rb"[^'\"\t\n\x0b\x0c\r >,]+")
_DATA_RUN = re.compile(rb"[^&%'\"\t\n\x0b\x0c\r >]+")
_ENTITY_RUN = re.compile(rb"[A-Za-z0-9_:\-]+")
_DEC_RUN = re.compile(rb"[0-9]+")
_HEX_RUN = re.compile(rb"[0-9A-Fa-f]+")
_PLAIN_RUN = re.compile(rb"[^\n\r@\x80-\xff]+")
_NL_RUN = re.compile(rb"[\n\r]+")
_ENTITY_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_:-")
_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")


def _u16(code: int) -> bytes:
    """entconv.c's u16_normalize: Latin-1 as one byte, full stops as '.', others &#xNNNN;."""
    code &= 0xFFFF
    if code == 0:
        return b""
    if code < 0xFF:
        return bytes([code])
    if code in (0x3002, 0xFF0E, 0xFE52):
        return b"."
    return b"&#x%04x;" % code


def _screnc_length(head: bytes | bytearray) -> int:
    """The decoded length in a Script Encoder header, with ClamAV's arithmetic quirks."""
    b = [_B64[c] for c in head[:6]]
    n = 0 if b[0] < 0 else b[0] << 2
    n += b[1] >> 4
    n += (b[1] & 0x0F) << 12
    n += max(b[2] >> 2, 0) << 8
    n += (b[2] & 0x03) << 22
    n += 0 if b[3] < 0 else b[3] << 16
    n += (0 if b[4] < 0 else b[4] << 2) << 24
    n += max(b[5] >> 4, 0) << 24
    return n & 0xFFFFFFFF


def _screnc_plain(run: bytes, table_pos: int) -> bytearray:
    """Decrypt a run of ordinary characters: each position picks one of three tables."""
    variants = [run.translate(t) for t in _SCRENC_TABLES]
    out = bytearray(run)
    for j in range(min(64, len(run))):
        out[j::64] = variants[_SCRENC_ORDER[(table_pos + j) % 64]][j::64]
    return out


def _chunks(data: bytes) -> Iterator[bytearray]:
    """The pieces cli_readchunk hands to the normaliser.

    NUL bytes are dropped, and a piece that would end inside a run of non-whitespace is cut
    after its last whitespace byte (the rest starts the next piece). Each piece's leading
    whitespace is later skipped whatever the state, so the cut points show in the output.
    """
    n, off = len(data), 0
    while off < n:
        stop = min(n, off + _CHUNK)
        if data.find(b"\x00", off, stop) < 0:
            chunk, end = data[off:stop], stop
        else:
            parts: list[bytes] = []
            have, end = 0, n
            for m in _NON_NUL_RUN.finditer(data, off):
                take = min(m.end() - m.start(), _CHUNK - have)
                parts.append(data[m.start() : m.start() + take])
                have += take
                if have == _CHUNK:
                    end = m.start() + take
                    break
            chunk = b"".join(parts)
        off = end
        if end < n and data[end] not in _WS_SET:
            cut = max(chunk.rfind(c) for c in _WS)
            if cut >= 1 and cut + 1 < len(chunk):
                off -= len(chunk) - (cut + 1)
                chunk = chunk[: cut + 1]
        yield bytearray(chunk)


# --------------------------------------------------------------------------- HTML states

(
    _NORM,
    _8BIT,
    _COMMENT,
    _CHAR_REF,
    _ENTITY_REF,
    _SKIP_WS,
    _TRIM_WS,
    _TAG,
    _TAG_ARG,
    _TAG_ARG_VAL,
    _TAG_ARG_EQUAL,
    _PROCESS_TAG,
    _CHAR_REF_DECODE,
    _LOOKFOR_SCRENC,
    _JSDECODE,
    _JSDECODE_LENGTH,
    _JSDECODE_DECRYPT,
    _RFC2397_TYPE,
    _RFC2397_INIT,
    _RFC2397_DATA,
    _RFC2397_FINISH,
    _RFC2397_ESC,
    _ESCAPE_CHAR,
    _BAD,
) = range(24)
_OUTSIDE, _IN_SCRIPT, _IN_STYLE = range(3)
_NOT_QUOTED, _SINGLE, _DOUBLE = range(3)


class _HtmlNormaliser:
    """ClamAV's cli_html_normalise with hrefs=NULL and default DCONF, as clamscan runs it."""

    def __init__(self) -> None:
        self.out = bytearray()  # nocomment.html
        self.text = bytearray()  # notags.html
        self.script = bytearray()  # javascript
        self.has_script = False
        self.state, self.next, self.saved_next = _NORM, _BAD, _BAD
        self.in_tag = _OUTSIDE
        self.space_written = False  # notags already ends with the space a break needs
        self.tag = bytearray()
        self.arg = bytearray()
        self.val = bytearray()
        self.args: list[tuple[bytes, bytes | None]] = []
        self.quoted = _NOT_QUOTED
        self.escape = False
        self.entity = bytearray()
        self.value = 0  # numeric character reference, or %XX escape in data: URIs
        self.hex = False
        self.esc_len = 0
        self.mb = b""  # pending 8-bit sequence in text
        self.mb2 = b""  # pending 8-bit sequence in an attribute value
        self.binary = False  # inside a data: URI body, CR and LF are ordinary bytes
        self.screnc_len = 0
        self.screnc_pos = 0
        self.in_screnc = False
        self.look_for_screnc = False
        self.ptr_screnc: int | None = None
        self.js: _JsNormaliser | None = None
        self.js_begin: int | None = None
        self.style_begin = 0  # where the current <style> block's text starts in this piece
        self.aborted = False
        self.handlers: list[Callable[[bytearray, int], int]] = [
            self._norm,
            self._eightbit,
            self._comment,
            self._char_ref,
            self._entity_ref,
            self._skip_ws,
            self._trim_ws,
            self._tag_name,
            self._tag_arg,
            self._tag_arg_val,
            self._tag_arg_equal,
            self._process_tag,
            self._char_ref_decode,
            self._lookfor_screnc,
            self._jsdecode,
            self._jsdecode_length,
            self._jsdecode_decrypt,
            self._rfc2397_type,
            self._rfc2397_init,
            self._rfc2397_data,
            self._rfc2397_finish,
            self._rfc2397_esc,
            self._escape_char,
        ]

    # ---------------------------------------------------------------- driver

    def run(self, data: bytes) -> None:
        for chunk in _chunks(data):
            self._chunk(chunk)
            if self.aborted:
                break
        if not self.aborted and self.entity:
            # An entity cut off by the end of the file is still decoded.
            name = bytes(self.entity)
            code = _ENTITIES.get(name)
            self.out += _u16(code) if code is not None else b"&" + _lower(name)
        if self.js is not None:
            self._flush_js()

    def _chunk(self, buf: bytearray) -> None:
        if self.in_tag == _IN_STYLE:
            self.style_begin = 0
        m = _WS_RUN.match(buf)
        pos = m.end() if m else 0
        while True:
            pos = self._run(buf, pos)
            if self.aborted:
                return
            if self.js is not None:
                self._feed_js(buf, self.js_begin, len(buf))
                self.js_begin = None
                if self.in_tag == _OUTSIDE:
                    self._flush_js()
            if self.in_tag == _IN_STYLE and pos < self.style_begin:
                self.aborted = True
                return
            if self.look_for_screnc and self.ptr_screnc is not None:
                # Go back to the encoded block found in this piece and decode it.
                pos, self.ptr_screnc = self.ptr_screnc, None
                self.state, self.next = _JSDECODE_LENGTH, _BAD
                m = _WS_RUN.match(buf, pos)
                pos = m.end() if m else pos
                continue
            break
        if self.in_screnc:
            self.state, self.next = _JSDECODE_DECRYPT, _BAD
        elif self.look_for_screnc and self.ptr_screnc is None and self.state != _LOOKFOR_SCRENC:
            self.saved_next, self.next, self.state = self.next, self.state, _LOOKFOR_SCRENC
        if self.next == self.state:
            self.next = _BAD

    def _run(self, buf: bytearray, pos: int) -> int:
        handlers = self.handlers
        n = len(buf)
        while pos < n:
            state = self.state
            if state == _BAD:
                self.aborted = True  # ClamAV gives up here, keeping what it wrote
                return pos
            c = buf[pos]
            if not self.binary:
                if c == 0x0D:  # CR is invisible to the normaliser outside data: URIs
                    pos += 1
                    continue
                if c == 0x0A:
                    buf[pos] = 0x20  # a visited LF becomes a space (see _visit)
            pos = handlers[state](buf, pos)
            if self.aborted:
                break
            if state == _JSDECODE_DECRYPT:
                n = len(buf)  # decoding rewrites the rest of the piece
        return pos

    def _feed_js(self, buf: bytearray, begin: int | None, end: int) -> None:
        start = begin or 0
        if self.js is not None and end > start:
            self.js.process(bytes(buf[start:end]))

    def _skip(self, buf: bytearray, pos: int, then: int) -> int:
        """SKIP_WS followed by ``then``, taken in the same step when the text allows."""
        m = _WS_RUN.match(buf, pos)
        end = m.end() if m else pos
        if end > pos:
            self._visit(buf, pos, end)
        if end < len(buf):
            self.state, self.next = then, _BAD
        else:
            self.state, self.next = _SKIP_WS, then
        return end

    def _visit(self, buf: bytearray, start: int, end: int) -> None:
        """Turn LF into a space in a run the state machine has passed over.

        ClamAV does this in its buffer as it goes, and both the JS normaliser and a second
        pass over the piece (for Script Encoder blocks) read the modified text.
        """
        if not self.binary and buf.find(b"\n", start, end) >= 0:
            buf[start:end] = buf[start:end].replace(b"\n", b" ")

    def _flush_js(self) -> None:
        js, self.js = self.js, None
        if js is None:
            return
        piece = (b"\n" if self.script else b"") + js.finish()
        # ClamAV appends "</script>" unless its 64 KiB output buffer already ends with it.
        if len(piece) % _JS_BUFFER < 9 or not piece.endswith(b"</script>"):
            piece += b"</script>"
        self.script += piece
        self.has_script = True

    # ---------------------------------------------------------------- helpers

    def _add_val(self, piece: bytes | bytearray) -> None:
        room = _STR_LENGTH - len(self.val)
        if room > 0:
            self.val += piece[:room]

    def _add_arg(self, value: bytes | None) -> None:
        if value is not None:
            value = value.split(b"\x00", 1)[0]
            if value[:1] == b'"':
                value = value[1:-1]  # ClamAV drops the opening quote and the last byte
        self.args.append((bytes(self.arg), value))

    def _arg_value(self, name: bytes) -> bytes | None:
        for key, value in self.args:
            if key == name:
                return value
        return None

    def _tag_text(self, tag: bytes) -> bytes:
        parts = [b"<", tag]
        for key, value in self.args:
            parts += [b" ", key] if value is None else [b" ", key, b'="', _lower(value), b'"']
        return b"".join(parts) + b">"

    def _emit_text(self, run: bytes) -> None:
        """One word of text outside tags (data: URI mode): notags gets a space for controls."""
        self.out += run
        if _CTRL.search(run) is None:
            self.text += run
            self.space_written = False
            return
        spaced = _CTRL_RUN.sub(b" ", run)
        if self.space_written and spaced[:1] == b" ":
            spaced = spaced[1:]
        self.text += spaced
        self.space_written = run[-1] < 0x20

    def _emit_groups(self, seq: bytes) -> None:
        """Complete 3-byte groups of 8-bit text; ClamAV's notags copy repeats the middle byte."""
        if _ALIGNED_DOT.match(seq) is None:
            self.out += seq
            doubled = bytearray(seq)
            doubled[2::3] = seq[1::3]
            self.text += doubled
            return
        for group in _GROUP3.findall(seq):
            if group in _DOT_SEQUENCES:
                self.out.append(0x2E)
                self.text.append(0x2E)
            else:
                self.out += group
                self.text += group[:2] + group[1:2]

    def _emit_last_group(self, seq: bytes) -> None:
        """The final 0-3 bytes of an 8-bit run, flushed by the next plain character."""
        if seq in _DOT_SEQUENCES:
            self.out.append(0x2E)
            self.text.append(0x2E)
            return
        c0, c1, c2 = (b"\x00\x00\x00" + seq)[-3:]
        self.out += seq if seq else b"\x00"
        if c0:
            self.text.append(c0)
        if c0 or c1:
            self.text.append(c1)
        self.text.append(c1)

    # ---------------------------------------------------------------- text states

    def _norm(self, buf: bytearray, pos: int) -> int:
        c = buf[pos]
        outside = self.in_tag == _OUTSIDE
        if c == 0x3C:  # <
            self.out.append(0x3C)
            if outside and not self.space_written:
                self.text.append(0x20)
                self.space_written = True
            self.tag.clear()
            return self._skip(buf, pos + 1, _TAG)
        if c in _WS_SET:
            if outside and not self.space_written:
                self.text.append(0x20)
                self.space_written = True
            self.state, self.next = _TRIM_WS, _NORM
            return pos
        if c == 0x26:  # &
            if outside and not self.space_written:
                self.text.append(0x20)
                self.space_written = True
            self.state, self.next = _CHAR_REF, _NORM
            return pos + 1
        if c >= 0x80:
            self.state, self.next = _8BIT, _NORM
            self.mb = bytes([c])
            return pos + 1
        if self.binary:
            m = _TEXT_RUN.match(buf, pos)
            assert m is not None
            run = _lower(m.group())
            if outside:
                self._emit_text(run)
            else:
                self.out += run.replace(b"'", b'"')  # scripts and styles: ' becomes "
            return m.end()
        # Several words at once: what ClamAV does word by word, passing through TRIM_WS
        # for each gap (one space in nocomment.html outside scripts, none inside).
        m = _TEXT_SPAN.match(buf, pos)
        assert m is not None
        end = m.end()
        self._visit(buf, pos, end)
        span = _lower(m.group().replace(b"\r", b""))
        if not outside:
            self.out += span.translate(None, _WS).replace(b"'", b'"')
            return end
        self.out += _SPACES.sub(b" ", span)
        gaps = _TEXT_GAPS.sub(b" ", span)
        if self.space_written and gaps[:1] == b" ":
            gaps = gaps[1:]
        self.text += gaps
        self.space_written = span[-1] < 0x20
        return end

    def _eightbit(self, buf: bytearray, pos: int) -> int:
        m = _HIGH_RUN.match(buf, pos)
        assert m is not None
        seq = self.mb + m.group()
        pos = m.end()
        if len(seq) > 3:
            # Every group of three is flushed by the byte after it.
            done = (len(seq) - 1) // 3 * 3
            self._emit_groups(seq[:done])
            seq = seq[done:]
        self.mb = seq
        if pos >= len(buf) or (buf[pos] == 0x0D and not self.binary):
            return pos  # the flushing character is in a later step
        if seq == b"\xa1" and buf[pos] in b"CDO":
            self.out.append(0x2E)
            self.text.append(0x2E)
            self.mb = b""
            return pos + 1  # still in this state: the next plain byte flushes an empty group
        self._emit_last_group(seq)
        self.mb = b""
        self.state, self.next = self.next, _NORM
        return pos

    def _skip_ws(self, buf: bytearray, pos: int) -> int:
        return self._skip(buf, pos, self.next)

    def _trim_ws(self, buf: bytearray, pos: int) -> int:
        m = _WS_RUN.match(buf, pos)
        end = m.end() if m else pos
        self._visit(buf, pos, end)
        pos = end
        if pos < len(buf):
            if self.in_tag == _OUTSIDE:
                self.out.append(0x20)
            self.state, self.next = self.next, _BAD
        return pos

    def _comment(self, buf: bytearray, pos: int) -> int:
        # A comment runs from "<!" to the first '>'; inside scripts it is kept, squeezed.
        end = buf.find(b">", pos)
        stop = end if end >= 0 else len(buf)
        self._visit(buf, pos, stop)
        if self.in_tag != _OUTSIDE:
            body = _lower(buf[pos:stop]).translate(None, _WS).replace(b"'", b'"')
            self.out += body + (b">" if end >= 0 else b"")
        if end < 0:
            return stop
        self.state, self.next = _SKIP_WS, _NORM
        return end + 1

    # ---------------------------------------------------------------- tags

    def _tag_name(self, buf: bytearray, pos: int) -> int:
        c = buf[pos]
        if not self.tag and c == 0x21:  # "<!": a comment
            if self.in_tag != _OUTSIDE:
                self.out.append(0x21)
            elif self.out:
                del self.out[-1]  # take back the '<'
            self.state, self.next = _COMMENT, _BAD
            return pos + 1
        if c == 0x3E:
            self.out.append(0x3E)
            return self._skip(buf, pos + 1, _PROCESS_TAG)
        if c in _WS_SET:
            self.arg.clear()
            # Inside a script only the end tag matters, so attributes are not parsed.
            return self._skip(buf, pos, _TAG_ARG if self.in_tag == _OUTSIDE else _PROCESS_TAG)
        if self.in_tag != _OUTSIDE and not self.tag and c != 0x2F:
            low = c | 0x20 if 0x41 <= c <= 0x5A else c
            self.out.append(low)
            self.tag.append(low)
            self.state = _NORM  # "<x" inside a script is just text
            return pos + 1
        m = _TAG_RUN.match(buf, pos)
        assert m is not None
        run = _lower(m.group())
        self.out += run
        self.tag += run[: max(0, _STR_LENGTH - len(self.tag))]
        return m.end()

    def _start_value(self, buf: bytearray, pos: int) -> int:
        self.out.append(0x3D)
        self.escape = False
        self.quoted = _NOT_QUOTED
        self.val.clear()
        return self._skip(buf, pos, _TAG_ARG_VAL)

    def _tag_arg(self, buf: bytearray, pos: int) -> int:
        c = buf[pos]
        if c == 0x3D:
            return self._start_value(buf, pos + 1)
        if c in _WS_SET:
            return self._skip(buf, pos + 1, _TAG_ARG_EQUAL)
        if c == 0x3E:
            self.out.append(0x3E)
            if self.arg:
                self._add_arg(None)
            self.state, self.next = _PROCESS_TAG, _BAD
            return pos + 1
        m = _ARG_RUN.match(buf, pos)
        assert m is not None
        if not self.arg:
            self.out.append(0x20)
        run = _lower(m.group())
        self.out += run
        self.arg += run[: max(0, _STR_LENGTH - len(self.arg))]
        return m.end()

    def _tag_arg_equal(self, buf: bytearray, pos: int) -> int:
        if buf[pos] == 0x3D:
            return self._start_value(buf, pos + 1)
        if self.arg:
            self._add_arg(None)
        self.arg.clear()
        self.state, self.next = _TAG_ARG, _BAD
        return pos

    def _end_value(self) -> None:
        self._add_arg(bytes(self.val))
        self.arg.clear()
        self.state, self.next = _SKIP_WS, _TAG_ARG

    def _tag_arg_val(self, buf: bytearray, pos: int) -> int:
        val = self.val
        if (len(val) == 5 and val == b"data:") or (len(val) == 6 and val == b'"data:'):
            # An RFC 2397 data: URI; its body never reaches the outputs.
            if self.out:
                del self.out[-1]
            if self.quoted != _NOT_QUOTED:
                self.out.append(0x22)
            val.clear()
            self.state, self.next = _RFC2397_TYPE, _TAG_ARG
            self.escape = buf[pos] == 0x5C
            return pos
        if not val and not self.mb2:
            m = _QUOTED_VALUE.match(buf, pos) or _BARE_VALUE.match(buf, pos)
            if m is not None and not m.group().lstrip(b"\"'").startswith(b"data:"):
                text = m.group()
                quoted = text[:1] in (b'"', b"'")
                self.out += b'"' + _lower(text[1:-1]) + b'"' if quoted else _lower(text)
                self._add_val(b'"' + text[1:-1] + b'"' if quoted else text)
                self._end_value()
                return self._skip(buf, m.end(), _TAG_ARG) if quoted else m.end()
        c = buf[pos]
        if c == 0x26:
            self.state, self.next = _CHAR_REF, _TAG_ARG_VAL
            pos += 1
        elif c == 0x27 or c == 0x22:
            quote = _SINGLE if c == 0x27 else _DOUBLE
            closing = bool(val) and not self.escape and self.quoted == quote
            if not val:
                self.quoted = quote
            self.out.append(0x22)  # either quote is written as "
            self._add_val(b'"')
            if closing:
                self._end_value()
            pos += 1
        elif c in _WS_SET or c == 0x3E:
            if self.quoted == _NOT_QUOTED:
                self._end_value()
            else:
                # Whitespace (or '>') inside quotes is kept once, and ClamAV then treats
                # the rest of the value as unquoted.
                self.out.append(c)
                self._add_val(b">" if c == 0x3E else b" ")
                self.state, self.next = _SKIP_WS, _TAG_ARG_VAL
                self.escape = False
                self.quoted = _NOT_QUOTED
                pos += 1
        elif c >= 0x80:
            m = _HIGH_RUN.match(buf, pos)
            assert m is not None
            seq = self.mb2 + m.group()
            done = (len(seq) - 1) // 3 * 3
            if done:
                flushed = _GROUP3.sub(
                    lambda g: b"." if g.group() in _DOT_SEQUENCES else g.group(), seq[:done]
                )
                self.out += flushed
                self._add_val(flushed)
            self.mb2 = seq[done:]
            pos = m.end()
        else:
            if self.mb2:
                seq, self.mb2 = self.mb2, b""
                if seq == b"\xa1" and c in b"CDO":
                    self.out.append(0x2E)
                    self._add_val(b".")
                    return pos + 1
                piece = b"." if seq in _DOT_SEQUENCES else seq
                self.out += piece
                self._add_val(piece)
            m = _VAL_RUN.match(buf, pos)
            assert m is not None
            run = m.group()
            # Stop where the value reaches 5 or 6 bytes: the next step checks for "data:".
            if len(val) < 5:
                run = run[: 5 - len(val)]
            elif len(val) == 5:
                run = run[:1]
            self.out += _lower(run)
            self._add_val(run)
            pos += len(run)
        self.escape = pos < len(buf) and buf[pos] == 0x5C
        return pos

    def _process_tag(self, buf: bytearray, pos: int) -> int:
        self.state, self.next = _SKIP_WS, _NORM
        tag = bytes(self.tag)
        if tag[:1] == b"/":
            if tag == b"/script":
                self.in_tag = _OUTSIDE
                if self.js is not None:
                    # The script text handed over ends here, so it includes "</script>".
                    self._feed_js(buf, self.js_begin, pos)
                    self.js_begin = None
                    self._flush_js()
            elif tag == b"/style" and self.in_tag == _IN_STYLE:
                # ClamAV measures the style text back from here; when "</style>" was
                # finished in an earlier piece, the length "underflows" and it gives up.
                if pos - len(b"</style>") < self.style_begin:
                    self.aborted = True
                    return pos
                self.in_tag = _OUTSIDE
        elif tag == b"script":
            lang = (self._arg_value(b"language") or b"").lower()
            plain = {b"jscript.encode": b"javascript", b"vbscript.encode": b"vbscript"}.get(lang)
            if plain is not None:
                for i, (key, _) in enumerate(self.args):
                    if key == b"language":
                        self.args[i] = (key, plain)
                        break
                self.state, self.next = _SKIP_WS, _JSDECODE
                self.out += self._tag_text(tag)
            self.in_tag = _IN_SCRIPT
            if self.js is None:
                self.js = _JsNormaliser()
                self.js_begin = pos
        elif tag == b"style":
            self.in_tag = _IN_STYLE
            self.style_begin = pos
        elif tag == b"%@":
            lang = (self._arg_value(b"language") or b"").lower()
            if lang in (b"jscript.encode", b"vbscript.encode"):
                self.saved_next, self.next = self.next, self.state
                self.look_for_screnc = False
                self.state = _LOOKFOR_SCRENC
        elif tag in (b"a", b"img"):
            link = self._arg_value(b"href" if tag == b"a" else b"src")
            if link:
                self.text += link + b" "
                self.space_written = True
        self.args.clear()
        return pos

    # ---------------------------------------------------------------- character references

    def _char_ref(self, buf: bytearray, pos: int) -> int:
        if buf[pos] == 0x23:  # &#
            self.value, self.hex = 0, False
            self.state = _CHAR_REF_DECODE
            return pos + 1
        self.state = _ENTITY_REF
        return pos

    def _ref_done(self, piece: bytes) -> None:
        self.out += piece
        if self.next == _TAG_ARG_VAL:
            self._add_val(piece)
        self.state, self.next = self.next, _BAD

    def _entity_ref(self, buf: bytearray, pos: int) -> int:
        c = buf[pos]
        name = bytes(self.entity)
        if c == 0x3B:  # ;
            code = _ENTITIES.get(name)
            self.entity.clear()
            self._ref_done(_u16(code) if code is not None else b"&" + _lower(name) + b";")
            return pos + 1
        if c in _ENTITY_CHARS and len(name) < _STR_LENGTH:
            m = _ENTITY_RUN.match(buf, pos)
            assert m is not None
            run = m.group()[: _STR_LENGTH - len(name)]
            self.entity += run
            return pos + len(run)
        # Not a reference after all: written back as typed (lower-cased), without ';'.
        self.entity.clear()
        self._ref_done(b"&" + _lower(name))
        return pos

    def _char_ref_decode(self, buf: bytearray, pos: int) -> int:
        c = buf[pos]
        if self.value == 0 and c in (0x78, 0x58):  # x, X
            self.hex = True
            return pos + 1
        if c == 0x3B:
            value = self.value
            if self.next == _TAG_ARG_VAL:
                self._add_val(bytes([value & 0xFF]))
            if value < 0x80:
                self.out.append(value | 0x20 if 0x41 <= value <= 0x5A else value)
            else:
                self.out += _u16(value)
            self.state, self.next = self.next, _BAD
            return pos + 1
        if 0x30 <= c <= 0x39 or (self.hex and c in _HEX_DIGITS):
            m = (_HEX_RUN if self.hex else _DEC_RUN).match(buf, pos)
            assert m is not None
            return self._add_digits(m.group(), pos)
        self.out.append(self.value & 0xFF)  # the reference ends without ';'
        self.state, self.next = self.next, _BAD
        return pos

    def _add_digits(self, digits: bytes, pos: int) -> int:
        base = 16 if self.hex else 10
        value = self.value
        skipped = 0
        if value == 0:
            skipped = len(digits) - len(digits.lstrip(b"0"))
            digits = digits[skipped:]
        if len(digits) <= 6 and value < 1 << 32:
            self.value = value * base ** len(digits) + (int(digits, base) if digits else 0)
            return pos + skipped + len(digits)
        # Long numbers: ClamAV's overflow guards end the reference; at most ~20 digits.
        for i, d in enumerate(digits):
            if self.hex and value < _INT64_MAX // 16:
                value *= 16
            elif value < _INT64_MAX // 10:
                value *= 10
            else:
                return self._overflow(value, pos + skipped + i)
            inc = d - 0x30 if d <= 0x39 else (d | 0x20) - 0x57
            if value > _INT64_MAX - inc:
                return self._overflow(value, pos + skipped + i)
            value += inc
        self.value = value
        return pos + skipped + len(digits)

    def _overflow(self, value: int, at: int) -> int:
        self.out.append(value & 0xFF)
        self.value = value
        self.state, self.next = self.next, _BAD
        return at + 1

    # ---------------------------------------------------------------- Script Encoder

    def _lookfor_screnc(self, buf: bytearray, pos: int) -> int:
        self.look_for_screnc = True
        found = buf.find(b"#@~^", pos)
        self.ptr_screnc = None
        if found >= 0:
            buf[found : found + 2] = b"//"
            self.ptr_screnc = found + 4
        self.state, self.next = self.next, self.saved_next
        return pos

    def _jsdecode(self, buf: bytearray, pos: int) -> int:
        found = buf.find(b"#@~^", pos)
        stop = found if found >= 0 else len(buf)
        self._visit(buf, pos, stop)
        segment = bytes(buf[pos:stop])
        self.out += _lower(segment if self.binary else segment.replace(b"\r", b""))
        if found < 0:
            return stop
        buf[found : found + 2] = b"//"  # the JS normaliser then reads the marker as a comment
        self.state, self.next = _JSDECODE_LENGTH, _BAD
        return found + 4

    def _jsdecode_length(self, buf: bytearray, pos: int) -> int:
        if len(buf) - pos < 8:
            self.state, self.next = _NORM, _BAD
            return pos
        self.screnc_len = _screnc_length(buf[pos : pos + 6])
        self.screnc_pos = 0
        self.state, self.next = _JSDECODE_DECRYPT, _BAD
        self.in_screnc = True
        buf[pos + 7] = 0x0A  # ends the marker's comment for the JS normaliser
        return pos + 8

    def _jsdecode_decrypt(self, buf: bytearray, pos: int) -> int:
        self._screnc_decode(buf, pos)
        self.state, self.next = _NORM, _BAD
        if not self.screnc_len:
            self.in_screnc = False
        return pos

    def _screnc_decode(self, buf: bytearray, pos: int) -> None:
        """Decode in place from ``pos``; the normaliser then reads the plain text there."""
        length, table_pos = self.screnc_len, self.screnc_pos
        src, n = pos, len(buf)
        out = bytearray()
        while length > 0 and src < n:
            c = buf[src]
            if c == 0x0A or c == 0x0D:
                m = _NL_RUN.match(buf, src)
                src = m.end() if m else src + 1
            elif c == 0x40:  # @x: an escaped character
                out.append(_SCRENC_ESCAPES.get(buf[src + 1], 0xFF) if src + 1 < n else 0xFF)
                table_pos = (table_pos + 1) % 64
                src = min(src + 2, n)
                length = (length - 2) & 0xFFFFFFFF
            elif c >= 0x80:  # copied with the byte after it
                if src + 1 >= n:
                    out.append(c)
                    src += 1
                    break
                out += buf[src : src + 2]
                src += 2
                length -= 1
            else:
                m = _PLAIN_RUN.match(buf, src)
                assert m is not None
                run = bytes(m.group()[:length])
                out += _screnc_plain(run, table_pos)
                table_pos = (table_pos + len(run)) % 64
                length -= len(run)
                src += len(run)
        self.screnc_len, self.screnc_pos = length, table_pos
        if length:
            buf[pos:] = out  # the rest of this piece is not looked at
            return
        rest = buf[src:]
        if len(rest) >= 12:
            rest = rest[12:]  # checksum and "^#~@" terminator
        buf[pos:] = out + rest

    # ---------------------------------------------------------------- data: URIs

    def _rfc2397_type(self, buf: bytearray, pos: int) -> int:
        c = buf[pos]
        if c == 0x27 or c == 0x22:
            quote = _SINGLE if c == 0x27 else _DOUBLE
            if not self.escape and self.quoted == quote:  # ends before any data
                self.arg.clear()
                self.state, self.next = _SKIP_WS, _TAG_ARG
            else:
                self._add_val(b'"')
            pos += 1
        elif c in _WS_SET or c == 0x3E:
            if self.quoted == _NOT_QUOTED:
                self.arg.clear()
                self.state, self.next = _SKIP_WS, _TAG_ARG
            else:
                self._add_val(b">" if c == 0x3E else b" ")
                self.state, self.next = _SKIP_WS, _RFC2397_TYPE
                self.escape = False
                self.quoted = _NOT_QUOTED
                pos += 1
        elif c == 0x2C:  # , starts the data
            self.state, self.next = _RFC2397_INIT, _BAD
            pos += 1
        else:
            m = _TYPE_RUN.match(buf, pos)
            assert m is not None
            self._add_val(_lower(m.group()))
            pos = m.end()
        self.escape = pos < len(buf) and buf[pos] == 0x5C
        return pos

    def _rfc2397_init(self, buf: bytearray, pos: int) -> int:
        self.state = _RFC2397_DATA
        self.binary = True
        return pos

    def _rfc2397_data(self, buf: bytearray, pos: int) -> int:
        c = buf[pos]
        if c == 0x26:  # character references inside data: URIs do reach nocomment.html
            self.state, self.next = _CHAR_REF, _RFC2397_DATA
            pos += 1
        elif c == 0x25:  # %XX
            self.esc_len = self.value = 0
            self.state, self.next = _ESCAPE_CHAR, _RFC2397_ESC
            pos += 1
        elif c == 0x27 or c == 0x22:
            quote = _SINGLE if c == 0x27 else _DOUBLE
            if not self.escape and self.quoted == quote:
                self.state = _RFC2397_FINISH
            pos += 1
        elif c in _WS_SET or c == 0x3E:
            if self.quoted == _NOT_QUOTED:
                self.state = _RFC2397_FINISH  # the '>' (or space) is consumed by the data
            pos += 1
        else:
            m = _DATA_RUN.match(buf, pos)
            assert m is not None
            pos = m.end()
        self.escape = pos < len(buf) and buf[pos] == 0x5C
        return pos

    def _rfc2397_finish(self, buf: bytearray, pos: int) -> int:
        self.state, self.next = _SKIP_WS, _TAG_ARG
        self.escape = False
        self.quoted = _NOT_QUOTED
        self.binary = False
        return pos

    def _rfc2397_esc(self, buf: bytearray, pos: int) -> int:
        self.state = _RFC2397_DATA
        return pos

    def _escape_char(self, buf: bytearray, pos: int) -> int:
        self.esc_len += 1
        self.value *= 16
        c = buf[pos]
        if c in _HEX_DIGITS:
            self.value += int(chr(c), 16)
        else:
            self.state = self.next
        if self.esc_len == 2:
            self.state = self.next
        return pos + 1


def normalise_html(data: bytes, *, max_notags: int = 8 * 1024 * 1024) -> HtmlForms:
    """The reference implementation of ``vigil.engine.htmlnorm.normalise_html``."""
    norm = _HtmlNormaliser()
    norm.run(data)
    return HtmlForms(
        nocomment=bytes(norm.out),
        notags=bytes(norm.text) if len(data) <= max_notags else None,
        script=bytes(norm.script) if norm.has_script else None,
    )
