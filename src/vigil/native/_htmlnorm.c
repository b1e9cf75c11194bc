/*
 * HTML normalisation: the byte-level state machine of vigil.engine.htmlnorm (ClamAV 1.4's
 * htmlnorm.c as clamscan runs it) in C, so that no Python code loops over the bytes of a
 * page. It produces nocomment.html and notags.html; the text of <script> blocks is handed,
 * piece by piece, to a Python callback that feeds the JS normaliser (itself in C: _jsnorm.c).
 *
 * The structure mirrors the Python reference (vigil.engine._htmlnorm_py) handler for handler,
 * so that the outputs stay byte-identical: each state takes a run of bytes per step, and the
 * in-place edits of the piece (LF turned into a space where the machine passed, Script
 * Encoder markers and decoding) are made exactly where the reference makes them, because
 * the script text handed to the JS normaliser is read from the edited piece.
 *
 * Memory: one piece of at most 8191 bytes, tag/attribute/value/entity buffers of 1024
 * bytes, the attributes of the current tag (bounded by the input), and the two outputs,
 * each capped by the caller's limit (exceeding it raises ValueError).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_common.h"

#define HN_CHUNK 8191  /* cli_readchunk hands over at most this many bytes at a time */
#define HN_STRLEN 1024 /* kept of a tag name, attribute name, value or entity name */
#define HN_INT64_MAX 0x7fffffffffffffffULL

/* Entity names (sorted bytewise) and their code points. */
static const struct { const char *name; uint16_t code; } hn_entities[743] = {
    {"AElig", 0xc6}, {"Aacgr", 0x386}, {"Aacute", 0xc1}, {"Acirc", 0xc2}, {"Acy", 0x410},
    {"Agr", 0x391}, {"Agrave", 0xc0}, {"Alpha", 0x391}, {"Aring", 0xc5}, {"Atilde", 0xc3},
    {"Auml", 0xc4}, {"Barwed", 0x2306}, {"Bcy", 0x411}, {"Beta", 0x392}, {"Bgr", 0x392},
    {"CHcy", 0x427}, {"Cap", 0x22d2}, {"Ccedil", 0xc7}, {"Chi", 0x3a7}, {"Cup", 0x22d3},
    {"DJcy", 0x402}, {"DScy", 0x405}, {"DZcy", 0x40f}, {"Dagger", 0x2021}, {"Dcy", 0x414},
    {"Delta", 0x394}, {"Dgr", 0x394}, {"Dot", 0xa8}, {"DotDot", 0x20dc}, {"EEacgr", 0x389},
    {"EEgr", 0x397}, {"ETH", 0xd0}, {"Eacgr", 0x388}, {"Eacute", 0xc9}, {"Ecirc", 0xca},
    {"Ecy", 0x42d}, {"Egr", 0x395}, {"Egrave", 0xc8}, {"Epsilon", 0x395}, {"Eta", 0x397},
    {"Euml", 0xcb}, {"Fcy", 0x424}, {"GJcy", 0x403}, {"Gamma", 0x393}, {"Gcy", 0x413},
    {"Gg", 0x22d9}, {"Ggr", 0x393}, {"Gt", 0x226b}, {"HARDcy", 0x42a}, {"IEcy", 0x415},
    {"IOcy", 0x401}, {"Iacgr", 0x38a}, {"Iacute", 0xcd}, {"Icirc", 0xce}, {"Icy", 0x418},
    {"Idigr", 0x3aa}, {"Igr", 0x399}, {"Igrave", 0xcc}, {"Iota", 0x399}, {"Iukcy", 0x406},
    {"Iuml", 0xcf}, {"Jcy", 0x419}, {"Jsercy", 0x408}, {"Jukcy", 0x404}, {"KHcy", 0x425},
    {"KHgr", 0x3a7}, {"KJcy", 0x40c}, {"Kappa", 0x39a}, {"Kcy", 0x41a}, {"Kgr", 0x39a},
    {"LJcy", 0x409}, {"Lambda", 0x39b}, {"Lcy", 0x41b}, {"Lgr", 0x39b}, {"Ll", 0x22d8},
    {"Lt", 0x226a}, {"Mcy", 0x41c}, {"Mgr", 0x39c}, {"Mu", 0x39c}, {"NJcy", 0x40a},
    {"Ncy", 0x41d}, {"Ngr", 0x39d}, {"Ntilde", 0xd1}, {"Nu", 0x39d}, {"OElig", 0x152},
    {"OHacgr", 0x38f}, {"OHgr", 0x3a9}, {"Oacgr", 0x38c}, {"Oacute", 0xd3}, {"Ocirc", 0xd4},
    {"Ocy", 0x41e}, {"Ogr", 0x39f}, {"Ograve", 0xd2}, {"Omega", 0x3a9}, {"Omicron", 0x39f},
    {"Oslash", 0xd8}, {"Otilde", 0xd5}, {"Ouml", 0xd6}, {"PHgr", 0x3a6}, {"PSgr", 0x3a8},
    {"Pcy", 0x41f}, {"Pgr", 0x3a0}, {"Phi", 0x3a6}, {"Pi", 0x3a0}, {"Prime", 0x2033},
    {"Psi", 0x3a8}, {"Rcy", 0x420}, {"Rgr", 0x3a1}, {"Rho", 0x3a1}, {"SHCHcy", 0x429},
    {"SHcy", 0x428}, {"SOFTcy", 0x42c}, {"Scaron", 0x160}, {"Scy", 0x421}, {"Sgr", 0x3a3},
    {"Sigma", 0x3a3}, {"Sub", 0x22d0}, {"Sup", 0x22d1}, {"THORN", 0xde}, {"THgr", 0x398},
    {"TSHcy", 0x40b}, {"TScy", 0x426}, {"Tau", 0x3a4}, {"Tcy", 0x422}, {"Tgr", 0x3a4},
    {"Theta", 0x398}, {"Uacgr", 0x38e}, {"Uacute", 0xda}, {"Ubrcy", 0x40e}, {"Ucirc", 0xdb},
    {"Ucy", 0x423}, {"Udigr", 0x3ab}, {"Ugr", 0x3a5}, {"Ugrave", 0xd9}, {"Upsi", 0x3d2},
    {"Upsilon", 0x3a5}, {"Uuml", 0xdc}, {"Vcy", 0x412}, {"Vdash", 0x22a9},
    {"Verbar", 0x2016}, {"Vvdash", 0x22aa}, {"Xgr", 0x39e}, {"Xi", 0x39e}, {"YAcy", 0x42f},
    {"YIcy", 0x407}, {"YUcy", 0x42e}, {"Yacute", 0xdd}, {"Ycy", 0x42b}, {"Yuml", 0x178},
    {"ZHcy", 0x416}, {"Zcy", 0x417}, {"Zeta", 0x396}, {"Zgr", 0x396}, {"aacgr", 0x3ac},
    {"aacute", 0xe1}, {"acirc", 0xe2}, {"acute", 0xb4}, {"acy", 0x430}, {"aelig", 0xe6},
    {"agr", 0x3b1}, {"agrave", 0xe0}, {"alefsym", 0x2135}, {"aleph", 0x2135},
    {"alpha", 0x3b1}, {"amalg", 0x2a3f}, {"amp", 0x26}, {"and", 0x2227}, {"ang", 0x2220},
    {"ang90", 0x221f}, {"angmsd", 0x2221}, {"angsph", 0x2222}, {"angst", 0x212b},
    {"ap", 0x2248}, {"ape", 0x224a}, {"apos", 0x27}, {"aring", 0xe5}, {"ast", 0x2a},
    {"asymp", 0x2248}, {"atilde", 0xe3}, {"auml", 0xe4}, {"barwed", 0x2305},
    {"bcong", 0x224c}, {"bcy", 0x431}, {"bdquo", 0x201e}, {"becaus", 0x2235},
    {"bepsi", 0x3f6}, {"bernou", 0x212c}, {"beta", 0x3b2}, {"beth", 0x2136}, {"bgr", 0x3b2},
    {"blank", 0x2423}, {"blk12", 0x2592}, {"blk14", 0x2591}, {"blk34", 0x2593},
    {"block", 0x2588}, {"bottom", 0x22a5}, {"bowtie", 0x22c8}, {"boxDL", 0x2557},
    {"boxDR", 0x2554}, {"boxDl", 0x2556}, {"boxDr", 0x2553}, {"boxH", 0x2550},
    {"boxHD", 0x2566}, {"boxHU", 0x2569}, {"boxHd", 0x2564}, {"boxHu", 0x2567},
    {"boxUL", 0x255d}, {"boxUR", 0x255a}, {"boxUl", 0x255c}, {"boxUr", 0x2559},
    {"boxV", 0x2551}, {"boxVH", 0x256c}, {"boxVL", 0x2563}, {"boxVR", 0x2560},
    {"boxVh", 0x256b}, {"boxVl", 0x2562}, {"boxVr", 0x255f}, {"boxdL", 0x2555},
    {"boxdR", 0x2552}, {"boxdl", 0x2510}, {"boxdr", 0x250c}, {"boxh", 0x2500},
    {"boxhD", 0x2565}, {"boxhU", 0x2568}, {"boxhd", 0x252c}, {"boxhu", 0x2534},
    {"boxuL", 0x255b}, {"boxuR", 0x2558}, {"boxul", 0x2518}, {"boxur", 0x2514},
    {"boxv", 0x2502}, {"boxvH", 0x256a}, {"boxvL", 0x2561}, {"boxvR", 0x255e},
    {"boxvh", 0x253c}, {"boxvl", 0x2524}, {"boxvr", 0x251c}, {"bprime", 0x2035},
    {"breve", 0x2d8}, {"brvbar", 0xa6}, {"bsim", 0x223d}, {"bsime", 0x22cd}, {"bsol", 0x5c},
    {"bull", 0x2022}, {"bump", 0x224e}, {"bumpe", 0x224f}, {"cap", 0x2229},
    {"caret", 0x2041}, {"caron", 0x2c7}, {"ccedil", 0xe7}, {"cedil", 0xb8}, {"cent", 0xa2},
    {"chcy", 0x447}, {"check", 0x2713}, {"chi", 0x3c7}, {"cir", 0x25cb}, {"circ", 0x2c6},
    {"cire", 0x2257}, {"clubs", 0x2663}, {"colon", 0x3a}, {"colone", 0x2254},
    {"comma", 0x2c}, {"commat", 0x40}, {"comp", 0x2201}, {"compfn", 0x2218},
    {"cong", 0x2245}, {"conint", 0x222e}, {"coprod", 0x2210}, {"copy", 0xa9},
    {"copysr", 0x2117}, {"crarr", 0x21b5}, {"cross", 0x2717}, {"cuepr", 0x22de},
    {"cuesc", 0x22df}, {"cup", 0x222a}, {"cupre", 0x227c}, {"curren", 0xa4},
    {"cuvee", 0x22ce}, {"cuwed", 0x22cf}, {"dArr", 0x21d3}, {"dagger", 0x2020},
    {"daleth", 0x2138}, {"darr", 0x2193}, {"dash", 0x2010}, {"dashv", 0x22a3},
    {"dblac", 0x2dd}, {"dcy", 0x434}, {"deg", 0xb0}, {"delta", 0x3b4}, {"dgr", 0x3b4},
    {"diam", 0x22c4}, {"diams", 0x2666}, {"die", 0xa8}, {"divide", 0xf7},
    {"divonx", 0x22c7}, {"djcy", 0x452}, {"dlcorn", 0x231e}, {"dlcrop", 0x230d},
    {"dollar", 0x24}, {"dot", 0x2d9}, {"drcorn", 0x231f}, {"drcrop", 0x230c},
    {"dscy", 0x455}, {"dtri", 0x25bf}, {"dtrif", 0x25be}, {"dzcy", 0x45f}, {"eDot", 0x2251},
    {"eacgr", 0x3ad}, {"eacute", 0xe9}, {"ecir", 0x2256}, {"ecirc", 0xea},
    {"ecolon", 0x2255}, {"ecy", 0x44d}, {"eeacgr", 0x3ae}, {"eegr", 0x3b7},
    {"efDot", 0x2252}, {"egr", 0x3b5}, {"egrave", 0xe8}, {"egs", 0x2a96}, {"ell", 0x2113},
    {"els", 0x2a95}, {"empty", 0x2205}, {"emsp", 0x2003}, {"emsp13", 0x2004},
    {"emsp14", 0x2005}, {"ensp", 0x2002}, {"epsi", 0x3f5}, {"epsilon", 0x3b5},
    {"epsis", 0x3f5}, {"epsiv", 0x3b5}, {"equals", 0x3d}, {"equiv", 0x2261},
    {"erDot", 0x2253}, {"esdot", 0x2250}, {"eta", 0x3b7}, {"eth", 0xf0}, {"euml", 0xeb},
    {"euro", 0x20ac}, {"excl", 0x21}, {"exist", 0x2203}, {"fcy", 0x444}, {"female", 0x2640},
    {"ffilig", 0xfb03}, {"fflig", 0xfb00}, {"ffllig", 0xfb04}, {"filig", 0xfb01},
    {"flat", 0x266d}, {"fllig", 0xfb02}, {"fnof", 0x192}, {"forall", 0x2200},
    {"fork", 0x22d4}, {"frac12", 0xbd}, {"frac13", 0x2153}, {"frac14", 0xbc},
    {"frac15", 0x2155}, {"frac16", 0x2159}, {"frac18", 0x215b}, {"frac23", 0x2154},
    {"frac25", 0x2156}, {"frac34", 0xbe}, {"frac35", 0x2157}, {"frac38", 0x215c},
    {"frac45", 0x2158}, {"frac56", 0x215a}, {"frac58", 0x215d}, {"frac78", 0x215e},
    {"frasl", 0x2044}, {"frown", 0x2322}, {"gE", 0x2267}, {"gEl", 0x2a8c}, {"gamma", 0x3b3},
    {"gammad", 0x3dd}, {"gap", 0x2a86}, {"gcy", 0x433}, {"ge", 0x2265}, {"gel", 0x22db},
    {"ges", 0x2a7e}, {"ggr", 0x3b3}, {"gimel", 0x2137}, {"gjcy", 0x453}, {"gl", 0x2277},
    {"grave", 0x60}, {"gsdot", 0x22d7}, {"gsim", 0x2273}, {"gt", 0x3e}, {"hArr", 0x21d4},
    {"hairsp", 0x200a}, {"half", 0xbd}, {"hamilt", 0x210b}, {"hardcy", 0x44a},
    {"harr", 0x2194}, {"hearts", 0x2665}, {"hellip", 0x2026}, {"horbar", 0x2015},
    {"hybull", 0x2043}, {"hyphen", 0x2010}, {"iacgr", 0x3af}, {"iacute", 0xed},
    {"icirc", 0xee}, {"icy", 0x438}, {"idiagr", 0x390}, {"idigr", 0x3ca}, {"iecy", 0x435},
    {"iexcl", 0xa1}, {"iff", 0x21d4}, {"igr", 0x3b9}, {"igrave", 0xec}, {"image", 0x2111},
    {"incare", 0x2105}, {"infin", 0x221e}, {"inodot", 0x131}, {"int", 0x222b},
    {"intcal", 0x22ba}, {"iocy", 0x451}, {"iota", 0x3b9}, {"iquest", 0xbf},
    {"isin", 0x2208}, {"iukcy", 0x456}, {"iuml", 0xef}, {"jcy", 0x439}, {"jnodot", 0x6a},
    {"jsercy", 0x458}, {"jukcy", 0x454}, {"kappa", 0x3ba}, {"kappav", 0x3f0},
    {"kcy", 0x43a}, {"kgr", 0x3ba}, {"khcy", 0x445}, {"khgr", 0x3c7}, {"kjcy", 0x45c},
    {"lArr", 0x21d0}, {"lE", 0x2266}, {"lEg", 0x2a8b}, {"lagran", 0x2112},
    {"lambda", 0x3bb}, {"lang", 0x2329}, {"lap", 0x2a85}, {"laquo", 0xab}, {"larr", 0x2190},
    {"lceil", 0x2308}, {"lcub", 0x7b}, {"lcy", 0x43b}, {"ldot", 0x22d6}, {"ldquo", 0x201c},
    {"ldquor", 0x201e}, {"le", 0x2264}, {"leg", 0x22da}, {"les", 0x2a7d},
    {"lfloor", 0x230a}, {"lg", 0x2276}, {"lgr", 0x3bb}, {"lhblk", 0x2584}, {"ljcy", 0x459},
    {"lowast", 0x2217}, {"lowbar", 0x5f}, {"loz", 0x25ca}, {"lozf", 0x29eb}, {"lpar", 0x28},
    {"lpargt", 0x29a0}, {"lrm", 0x200e}, {"lsaquo", 0x2039}, {"lsim", 0x2272},
    {"lsqb", 0x5b}, {"lsquo", 0x2018}, {"lsquor", 0x201a}, {"lt", 0x3c}, {"lthree", 0x22cb},
    {"ltimes", 0x22c9}, {"ltri", 0x25c3}, {"ltrie", 0x22b4}, {"ltrif", 0x25c2},
    {"macr", 0xaf}, {"male", 0x2642}, {"malt", 0x2720}, {"marker", 0x25ae}, {"mcy", 0x43c},
    {"mdash", 0x2014}, {"mgr", 0x3bc}, {"micro", 0xb5}, {"mid", 0x2223}, {"middot", 0xb7},
    {"minus", 0x2212}, {"minusb", 0x229f}, {"mldr", 0x2026}, {"mnplus", 0x2213},
    {"models", 0x22a7}, {"mu", 0x3bc}, {"nabla", 0x2207}, {"natur", 0x266e}, {"nbsp", 0xa0},
    {"ncy", 0x43d}, {"ndash", 0x2013}, {"ne", 0x2260}, {"nexist", 0x2204}, {"ngr", 0x3bd},
    {"ni", 0x220b}, {"njcy", 0x45a}, {"nldr", 0x2025}, {"not", 0xac}, {"notin", 0x2209},
    {"nsub", 0x2284}, {"ntilde", 0xf1}, {"nu", 0x3bd}, {"num", 0x23}, {"numero", 0x2116},
    {"numsp", 0x2007}, {"oS", 0x24c8}, {"oacgr", 0x3cc}, {"oacute", 0xf3}, {"oast", 0x229b},
    {"ocir", 0x229a}, {"ocirc", 0xf4}, {"ocy", 0x43e}, {"odash", 0x229d}, {"odot", 0x2299},
    {"oelig", 0x153}, {"ogon", 0x2db}, {"ogr", 0x3bf}, {"ograve", 0xf2}, {"ohacgr", 0x3ce},
    {"ohgr", 0x3c9}, {"ohm", 0x2126}, {"oline", 0x203e}, {"omega", 0x3c9},
    {"omicron", 0x3bf}, {"ominus", 0x2296}, {"oplus", 0x2295}, {"or", 0x2228},
    {"order", 0x2134}, {"ordf", 0xaa}, {"ordm", 0xba}, {"oslash", 0xf8}, {"osol", 0x2298},
    {"otilde", 0xf5}, {"otimes", 0x2297}, {"ouml", 0xf6}, {"par", 0x2225}, {"para", 0xb6},
    {"part", 0x2202}, {"pcy", 0x43f}, {"percnt", 0x25}, {"period", 0x2e},
    {"permil", 0x2030}, {"perp", 0x22a5}, {"pgr", 0x3c0}, {"phgr", 0x3c6}, {"phi", 0x3c6},
    {"phis", 0x3d5}, {"phiv", 0x3c6}, {"phmmat", 0x2133}, {"phone", 0x260e}, {"pi", 0x3c0},
    {"piv", 0x3d6}, {"planck", 0x210f}, {"plus", 0x2b}, {"plusb", 0x229e},
    {"plusdo", 0x2214}, {"plusmn", 0xb1}, {"pound", 0xa3}, {"pr", 0x227a}, {"prap", 0x2ab7},
    {"pre", 0x2aaf}, {"prime", 0x2032}, {"prod", 0x220f}, {"prop", 0x221d},
    {"prsim", 0x227e}, {"psgr", 0x3c8}, {"psi", 0x3c8}, {"puncsp", 0x2008}, {"quest", 0x3f},
    {"quot", 0x22}, {"rArr", 0x21d2}, {"radic", 0x221a}, {"rang", 0x232a}, {"raquo", 0xbb},
    {"rarr", 0x2192}, {"rceil", 0x2309}, {"rcub", 0x7d}, {"rcy", 0x440}, {"rdquo", 0x201d},
    {"rdquor", 0x201d}, {"real", 0x211c}, {"rect", 0x25ad}, {"reg", 0xae},
    {"rfloor", 0x230b}, {"rgr", 0x3c1}, {"rho", 0x3c1}, {"rhov", 0x3f1}, {"ring", 0x2da},
    {"rlm", 0x200f}, {"rpar", 0x29}, {"rpargt", 0x2994}, {"rsaquo", 0x203a}, {"rsqb", 0x5d},
    {"rsquo", 0x2019}, {"rsquor", 0x2019}, {"rthree", 0x22cc}, {"rtimes", 0x22ca},
    {"rtri", 0x25b9}, {"rtrie", 0x22b5}, {"rtrif", 0x25b8}, {"rx", 0x211e},
    {"samalg", 0x2210}, {"sbquo", 0x201a}, {"sbsol", 0xfe68}, {"sc", 0x227b},
    {"scap", 0x2ab8}, {"scaron", 0x161}, {"sccue", 0x227d}, {"sce", 0x2ab0},
    {"scsim", 0x227f}, {"scy", 0x441}, {"sdot", 0x22c5}, {"sdotb", 0x22a1}, {"sect", 0xa7},
    {"semi", 0x3b}, {"setmn", 0x2216}, {"sext", 0x2736}, {"sfgr", 0x3c2},
    {"sfrown", 0x2322}, {"sgr", 0x3c3}, {"sharp", 0x266f}, {"shchcy", 0x449},
    {"shcy", 0x448}, {"shy", 0xad}, {"sigma", 0x3c3}, {"sigmaf", 0x3c2}, {"sigmav", 0x3c2},
    {"sim", 0x223c}, {"sime", 0x2243}, {"smid", 0x2223}, {"smile", 0x2323},
    {"softcy", 0x44c}, {"sol", 0x2f}, {"spades", 0x2660}, {"spar", 0x2225},
    {"sqcap", 0x2293}, {"sqcup", 0x2294}, {"sqsub", 0x228f}, {"sqsube", 0x2291},
    {"sqsup", 0x2290}, {"sqsupe", 0x2292}, {"squ", 0x25a1}, {"square", 0x25a1},
    {"squf", 0x25aa}, {"ssetmn", 0x2216}, {"ssmile", 0x2323}, {"sstarf", 0x22c6},
    {"star", 0x2606}, {"starf", 0x2605}, {"sub", 0x2282}, {"subE", 0x2ac5},
    {"sube", 0x2286}, {"sum", 0x2211}, {"sung", 0x266a}, {"sup", 0x2283}, {"sup1", 0xb9},
    {"sup2", 0xb2}, {"sup3", 0xb3}, {"supE", 0x2ac6}, {"supe", 0x2287}, {"szlig", 0xdf},
    {"target", 0x2316}, {"tau", 0x3c4}, {"tcy", 0x442}, {"tdot", 0x20db},
    {"telrec", 0x2315}, {"tgr", 0x3c4}, {"there4", 0x2234}, {"theta", 0x3b8},
    {"thetas", 0x3b8}, {"thetasym", 0x3d1}, {"thetav", 0x3d1}, {"thgr", 0x3b8},
    {"thinsp", 0x2009}, {"thkap", 0x2248}, {"thksim", 0x223c}, {"thorn", 0xfe},
    {"tilde", 0x2dc}, {"times", 0xd7}, {"timesb", 0x22a0}, {"top", 0x22a4},
    {"tprime", 0x2034}, {"trade", 0x2122}, {"trie", 0x225c}, {"tscy", 0x446},
    {"tshcy", 0x45b}, {"twixt", 0x226c}, {"uArr", 0x21d1}, {"uacgr", 0x3cd},
    {"uacute", 0xfa}, {"uarr", 0x2191}, {"ubrcy", 0x45e}, {"ucirc", 0xfb}, {"ucy", 0x443},
    {"udiagr", 0x3b0}, {"udigr", 0x3cb}, {"ugr", 0x3c5}, {"ugrave", 0xf9},
    {"uhblk", 0x2580}, {"ulcorn", 0x231c}, {"ulcrop", 0x230f}, {"uml", 0xa8},
    {"uplus", 0x228e}, {"upsi", 0x3c5}, {"upsih", 0x3d2}, {"upsilon", 0x3c5},
    {"urcorn", 0x231d}, {"urcrop", 0x230e}, {"utri", 0x25b5}, {"utrif", 0x25b4},
    {"uuml", 0xfc}, {"vDash", 0x22a8}, {"vcy", 0x432}, {"vdash", 0x22a2},
    {"veebar", 0x22bb}, {"vellip", 0x22ee}, {"verbar", 0x7c}, {"vltri", 0x22b2},
    {"vprime", 0x2032}, {"vprop", 0x221d}, {"vrtri", 0x22b3}, {"wedgeq", 0x2259},
    {"weierp", 0x2118}, {"wreath", 0x2240}, {"xcirc", 0x25ef}, {"xdtri", 0x25bd},
    {"xgr", 0x3be}, {"xi", 0x3be}, {"xutri", 0x25b3}, {"yacute", 0xfd}, {"yacy", 0x44f},
    {"ycy", 0x44b}, {"yen", 0xa5}, {"yicy", 0x457}, {"yucy", 0x44e}, {"yuml", 0xff},
    {"zcy", 0x437}, {"zeta", 0x3b6}, {"zgr", 0x3b6}, {"zhcy", 0x436}, {"zwj", 0x200d},
    {"zwnj", 0x200c},
};

/* Script Encoder: three substitution tables for the 7-bit bytes, and which table each
 * position (mod 64) uses. */
static const uint8_t hn_screnc_tables[3][128] = {
    {
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x57, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
        0x2e, 0x47, 0x7a, 0x56, 0x42, 0x6a, 0x2f, 0x26, 0x49, 0x41, 0x34, 0x32, 0x5b, 0x76, 0x72, 0x43,
        0x38, 0x39, 0x70, 0x45, 0x68, 0x71, 0x4f, 0x09, 0x62, 0x44, 0x23, 0x75, 0x3c, 0x7e, 0x3e, 0x5e,
        0xff, 0x77, 0x4a, 0x61, 0x5d, 0x22, 0x4b, 0x6f, 0x4e, 0x3b, 0x4c, 0x50, 0x67, 0x2a, 0x7d, 0x74,
        0x54, 0x2b, 0x2d, 0x2c, 0x30, 0x6e, 0x6b, 0x66, 0x35, 0x25, 0x21, 0x64, 0x4d, 0x52, 0x63, 0x3f,
        0x7b, 0x78, 0x29, 0x28, 0x73, 0x59, 0x33, 0x7f, 0x6d, 0x55, 0x53, 0x7c, 0x3a, 0x5f, 0x65, 0x46,
        0x58, 0x31, 0x69, 0x6c, 0x5a, 0x48, 0x27, 0x5c, 0x3d, 0x24, 0x79, 0x37, 0x60, 0x51, 0x20, 0x36,
    },
    {
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x7b, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
        0x32, 0x30, 0x21, 0x29, 0x5b, 0x38, 0x33, 0x3d, 0x58, 0x3a, 0x35, 0x65, 0x39, 0x5c, 0x56, 0x73,
        0x66, 0x4e, 0x45, 0x6b, 0x62, 0x59, 0x78, 0x5e, 0x7d, 0x4a, 0x6d, 0x71, 0x3c, 0x60, 0x3e, 0x53,
        0xff, 0x42, 0x27, 0x48, 0x72, 0x75, 0x31, 0x37, 0x4d, 0x52, 0x22, 0x54, 0x6a, 0x47, 0x64, 0x2d,
        0x20, 0x7f, 0x2e, 0x4c, 0x5d, 0x7e, 0x6c, 0x6f, 0x79, 0x74, 0x43, 0x26, 0x76, 0x25, 0x24, 0x2b,
        0x28, 0x23, 0x41, 0x34, 0x09, 0x2a, 0x44, 0x3f, 0x77, 0x3b, 0x55, 0x69, 0x61, 0x63, 0x50, 0x67,
        0x51, 0x49, 0x4f, 0x46, 0x68, 0x7c, 0x36, 0x70, 0x6e, 0x7a, 0x2f, 0x5f, 0x4b, 0x5a, 0x2c, 0x57,
    },
    {
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x6e, 0x0a, 0x0b, 0x0c, 0x06, 0x0e, 0x0f,
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
        0x2d, 0x75, 0x52, 0x60, 0x71, 0x5e, 0x49, 0x5c, 0x62, 0x7d, 0x29, 0x36, 0x20, 0x7c, 0x7a, 0x7f,
        0x6b, 0x63, 0x33, 0x2b, 0x68, 0x51, 0x66, 0x76, 0x31, 0x64, 0x54, 0x43, 0x3c, 0x3a, 0x3e, 0x7e,
        0xff, 0x45, 0x2c, 0x2a, 0x74, 0x27, 0x37, 0x44, 0x79, 0x59, 0x2f, 0x6f, 0x26, 0x72, 0x6a, 0x39,
        0x7b, 0x3f, 0x38, 0x77, 0x67, 0x53, 0x47, 0x34, 0x78, 0x5d, 0x30, 0x23, 0x5a, 0x5b, 0x6c, 0x48,
        0x55, 0x70, 0x69, 0x2e, 0x4c, 0x21, 0x24, 0x4e, 0x50, 0x09, 0x56, 0x73, 0x35, 0x61, 0x4b, 0x58,
        0x3b, 0x57, 0x22, 0x6d, 0x4d, 0x25, 0x28, 0x46, 0x4a, 0x32, 0x41, 0x3d, 0x5f, 0x4f, 0x42, 0x65,
    },
};
static const uint8_t hn_screnc_order[64] = {
    0, 2, 1, 0, 2, 1, 2, 1, 1, 2, 1, 2, 0, 1, 2, 1, 0, 1, 2, 1, 0, 0, 2, 1, 1, 2, 0, 1, 2, 1, 1, 2,
    0, 0, 1, 2, 1, 2, 1, 0, 1, 0, 0, 2, 1, 0, 1, 2, 0, 1, 2, 1, 0, 0, 2, 1, 1, 0, 0, 2, 1, 0, 1, 2,
};

static const uint8_t hn_screnc_escapes[5][2] = {
    {0x21, 0x3c}, {0x23, 0x0d}, {0x24, 0x40}, {0x26, 0x0a}, {0x2a, 0x3e},
};

enum {
    S_NORM, S_8BIT, S_COMMENT, S_CHAR_REF, S_ENTITY_REF, S_SKIP_WS, S_TRIM_WS, S_TAG,
    S_TAG_ARG, S_TAG_ARG_VAL, S_TAG_ARG_EQUAL, S_PROCESS_TAG, S_CHAR_REF_DECODE,
    S_LOOKFOR_SCRENC, S_JSDECODE, S_JSDECODE_LENGTH, S_JSDECODE_DECRYPT, S_RFC2397_TYPE,
    S_RFC2397_INIT, S_RFC2397_DATA, S_RFC2397_FINISH, S_RFC2397_ESC, S_ESCAPE_CHAR, S_BAD,
};
enum { T_OUTSIDE, T_SCRIPT, T_STYLE };
enum { Q_NONE, Q_SINGLE, Q_DOUBLE };
enum { E_OK, E_MEMORY, E_LIMIT, E_PYTHON };

/* Character classes (bit flags). */
#define K_WS 0x001    /* \t \n \v \f \r space */
#define K_SPAN 0x002  /* ends a word of text: < & high bytes and whitespace but CR */
#define K_TAG 0x004   /* ends a tag name: whitespace > */
#define K_ARG 0x008   /* ends an attribute name: whitespace > = */
#define K_VAL 0x010   /* ends a run of an attribute value: & ' " whitespace > high bytes */
#define K_TYPE 0x020  /* ends a data: URI's type: ' " whitespace > , */
#define K_DATA 0x040  /* ends a run of a data: URI's body: & % ' " whitespace > */
#define K_ENT 0x080   /* entity name characters: A-Z a-z 0-9 _ : - */
#define K_HEX 0x100   /* hex digits */
#define K_CTRL 0x200  /* \x00-\x08 \x0e-\x1f */
#define K_PLAIN 0x400 /* ends a run of Script Encoder text: \n \r @ high bytes */

static uint16_t hn_class[256];

static void hn_init_classes(void)
{
    int c;
    for (c = 0; c < 256; c++) {
        uint16_t k = 0;
        int ws = (c >= 0x09 && c <= 0x0d) || c == 0x20;
        int high = c >= 0x80;
        int alnum = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        if (ws)
            k |= K_WS;
        if (c == '<' || c == '&' || high || (ws && c != '\r'))
            k |= K_SPAN;
        if (ws || c == '>')
            k |= K_TAG;
        if (ws || c == '>' || c == '=')
            k |= K_ARG;
        if (ws || c == '>' || c == '&' || c == '\'' || c == '"' || high)
            k |= K_VAL;
        if (ws || c == '>' || c == '\'' || c == '"' || c == ',')
            k |= K_TYPE;
        if (ws || c == '>' || c == '&' || c == '%' || c == '\'' || c == '"')
            k |= K_DATA;
        if (alnum || c == '_' || c == ':' || c == '-')
            k |= K_ENT;
        if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'))
            k |= K_HEX;
        if (c <= 0x08 || (c >= 0x0e && c <= 0x1f))
            k |= K_CTRL;
        if (c == '\n' || c == '\r' || c == '@' || high)
            k |= K_PLAIN;
        hn_class[c] = k;
    }
}

#define IS(c, k) (hn_class[(uint8_t)(c)] & (k))

static inline uint8_t hn_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c | 0x20) : c;
}

static inline int hn_hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    return (c | 0x20) - 'a' + 10;
}

static int hn_is_dot(uint8_t a, uint8_t b, uint8_t c)
{
    return (a == 0xe3 && b == 0x80 && c == 0x82) || (a == 0xef && b == 0xbc && c == 0x8e) ||
           (a == 0xef && b == 0xb9 && c == 0x92);
}

/* One attribute of the current tag: name and value live in the arena. */
typedef struct {
    size_t key_off, key_len, val_off, val_len;
    int has_val;
} hn_attr;

typedef struct {
    uint8_t buf[HN_CHUNK]; /* the current piece, edited in place */
    size_t n;              /* its length (Script Encoder decoding shortens it) */
    vg_out out, text;      /* nocomment.html, notags.html */
    int want_text;
    int state, next, saved_next, in_tag, space_written;
    uint8_t tag[HN_STRLEN], arg[HN_STRLEN], val[HN_STRLEN], entity[HN_STRLEN];
    size_t tag_len, arg_len, val_len, entity_len;
    hn_attr *attrs;
    size_t nattrs, attrs_cap;
    uint8_t *arena;
    size_t arena_len, arena_cap;
    int quoted, escape;
    uint64_t value; /* numeric character reference, or a %XX escape in a data: URI */
    int hex, esc_len;
    uint8_t mb[3], mb2[3]; /* pending 8-bit sequence in text / in an attribute value */
    size_t mb_len, mb2_len;
    int binary; /* inside a data: URI body: CR and LF are ordinary bytes */
    uint32_t screnc_len;
    unsigned screnc_pos;
    int in_screnc, look_for_screnc;
    Py_ssize_t ptr_screnc;  /* -1: none */
    int js;                 /* a script is open */
    Py_ssize_t js_begin;    /* -1: none */
    Py_ssize_t style_begin; /* where the current <style> text starts in this piece */
    int aborted;
    int error;
    PyObject *callback;
    PyThreadState *ts;
} hn_state;

/* ------------------------------------------------------------------ output */

static void hn_fail(hn_state *s, int err)
{
    if (!s->error)
        s->error = err;
    s->aborted = 1;
}

/* Room for n more bytes in o, or an error (the cap is a hard limit, never a truncation). */
static int hn_room(hn_state *s, vg_out *o, size_t n)
{
    if (n <= o->size - o->len)
        return 1;
    if (n > o->cap - o->len) {
        hn_fail(s, E_LIMIT);
        return 0;
    }
    if (vg_out_reserve(o, n) != n || o->failed) {
        hn_fail(s, E_MEMORY);
        return 0;
    }
    return 1;
}

static inline void out1(hn_state *s, uint8_t c)
{
    if (hn_room(s, &s->out, 1))
        s->out.buf[s->out.len++] = c;
}

static void outn(hn_state *s, const uint8_t *p, size_t n)
{
    if (n && hn_room(s, &s->out, n)) {
        memcpy(s->out.buf + s->out.len, p, n);
        s->out.len += n;
    }
}

static inline void text1(hn_state *s, uint8_t c)
{
    if (s->want_text && hn_room(s, &s->text, 1))
        s->text.buf[s->text.len++] = c;
}

static void textn(hn_state *s, const uint8_t *p, size_t n)
{
    if (s->want_text && n && hn_room(s, &s->text, n)) {
        memcpy(s->text.buf + s->text.len, p, n);
        s->text.len += n;
    }
}

/* Lower-cased copy of p[0:n] to nocomment. */
static void outn_lower(hn_state *s, const uint8_t *p, size_t n)
{
    size_t i;
    if (n && hn_room(s, &s->out, n)) {
        uint8_t *d = s->out.buf + s->out.len;
        for (i = 0; i < n; i++)
            d[i] = hn_lower(p[i]);
        s->out.len += n;
    }
}

static void add_val(hn_state *s, const uint8_t *p, size_t n)
{
    size_t room = HN_STRLEN - s->val_len;
    if (n > room)
        n = room;
    memcpy(s->val + s->val_len, p, n);
    s->val_len += n;
}

static inline void add_val1(hn_state *s, uint8_t c)
{
    if (s->val_len < HN_STRLEN)
        s->val[s->val_len++] = c;
}

/* entconv.c's u16_normalize of a code point: up to 8 bytes in buf, returns how many. */
static size_t hn_u16(uint64_t code64, uint8_t *buf)
{
    unsigned code = (unsigned)(code64 & 0xffff);
    static const char hexd[] = "0123456789abcdef";
    if (code == 0)
        return 0;
    if (code < 0xff) {
        buf[0] = (uint8_t)code;
        return 1;
    }
    if (code == 0x3002 || code == 0xff0e || code == 0xfe52) {
        buf[0] = '.';
        return 1;
    }
    buf[0] = '&';
    buf[1] = '#';
    buf[2] = 'x';
    buf[3] = (uint8_t)hexd[(code >> 12) & 15];
    buf[4] = (uint8_t)hexd[(code >> 8) & 15];
    buf[5] = (uint8_t)hexd[(code >> 4) & 15];
    buf[6] = (uint8_t)hexd[code & 15];
    buf[7] = ';';
    return 8;
}

static int hn_entity_code(const uint8_t *name, size_t len)
{
    size_t lo = 0, hi = sizeof(hn_entities) / sizeof(hn_entities[0]);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *e = hn_entities[mid].name;
        size_t elen = strlen(e), m = elen < len ? elen : len;
        int cmp = memcmp(e, name, m);
        if (!cmp)
            cmp = elen < len ? -1 : (elen > len ? 1 : 0);
        if (!cmp)
            return hn_entities[mid].code;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ------------------------------------------------------------------ attributes */

static int arena_put(hn_state *s, const uint8_t *p, size_t n, size_t *off)
{
    if (n > s->arena_cap - s->arena_len) {
        size_t cap = s->arena_cap ? s->arena_cap : 4096;
        uint8_t *q;
        while (cap - s->arena_len < n)
            cap *= 2;
        q = realloc(s->arena, cap);
        if (!q) {
            hn_fail(s, E_MEMORY);
            return 0;
        }
        s->arena = q;
        s->arena_cap = cap;
    }
    *off = s->arena_len;
    if (n)
        memcpy(s->arena + s->arena_len, p, n);
    s->arena_len += n;
    return 1;
}

/* The current attribute name with a value (cut at its first NUL; a value that starts
 * with '"' loses that and its last byte) or without one. */
static void add_attr(hn_state *s, const uint8_t *v, size_t vlen, int has_val)
{
    hn_attr a;
    if (s->nattrs == s->attrs_cap) {
        size_t cap = s->attrs_cap ? s->attrs_cap * 2 : 16;
        hn_attr *q = realloc(s->attrs, cap * sizeof(hn_attr));
        if (!q) {
            hn_fail(s, E_MEMORY);
            return;
        }
        s->attrs = q;
        s->attrs_cap = cap;
    }
    memset(&a, 0, sizeof(a));
    if (!arena_put(s, s->arg, s->arg_len, &a.key_off))
        return;
    a.key_len = s->arg_len;
    a.has_val = has_val;
    if (has_val) {
        const uint8_t *nul = vlen ? memchr(v, 0, vlen) : NULL;
        if (nul)
            vlen = (size_t)(nul - v);
        if (vlen && v[0] == '"') {
            v++;
            vlen = vlen >= 2 ? vlen - 2 : 0;
        }
        if (!arena_put(s, v, vlen, &a.val_off))
            return;
        a.val_len = vlen;
    }
    s->attrs[s->nattrs++] = a;
}

/* The first attribute called name, or NULL. */
static hn_attr *find_attr(hn_state *s, const char *name)
{
    size_t i, len = strlen(name);
    for (i = 0; i < s->nattrs; i++) {
        hn_attr *a = &s->attrs[i];
        if (a->key_len == len && !memcmp(s->arena + a->key_off, name, len))
            return a;
    }
    return NULL;
}

/* ------------------------------------------------------------------ scripts */

/* Hands buf[start:end] (or, with flush, the end of the script) to the Python callback. */
static void js_call(hn_state *s, size_t start, size_t end, int flush)
{
    PyObject *arg, *res = NULL;
    if (s->error)
        return;
    PyEval_RestoreThread(s->ts);
    arg = flush ? Py_NewRef(Py_None)
                : PyBytes_FromStringAndSize((const char *)s->buf + start, (Py_ssize_t)(end - start));
    if (arg) {
        res = PyObject_CallOneArg(s->callback, arg);
        Py_DECREF(arg);
    }
    if (!res)
        hn_fail(s, E_PYTHON);
    Py_XDECREF(res);
    s->ts = PyEval_SaveThread();
}

static void feed_js(hn_state *s, Py_ssize_t begin, size_t end)
{
    size_t start = begin < 0 ? 0 : (size_t)begin;
    if (s->js && end > start)
        js_call(s, start, end, 0);
}

static void flush_js(hn_state *s)
{
    if (s->js) {
        s->js = 0;
        js_call(s, 0, 0, 1);
    }
}

/* ------------------------------------------------------------------ helpers */

static size_t ws_end(hn_state *s, size_t pos)
{
    if (pos > s->n)
        return s->n;
    while (pos < s->n && IS(s->buf[pos], K_WS))
        pos++;
    return pos;
}

/* LF becomes a space in a run the machine has passed over (outside data: URIs). */
static void visit(hn_state *s, size_t start, size_t end)
{
    size_t i;
    if (s->binary)
        return;
    for (i = start; i < end; i++)
        if (s->buf[i] == '\n')
            s->buf[i] = ' ';
}

static size_t skip_then(hn_state *s, size_t pos, int then)
{
    size_t end = ws_end(s, pos);
    if (end > pos)
        visit(s, pos, end);
    if (end < s->n) {
        s->state = then;
        s->next = S_BAD;
    } else {
        s->state = S_SKIP_WS;
        s->next = then;
    }
    return end;
}

static void emit_group(hn_state *s, uint8_t a, uint8_t b, uint8_t c)
{
    if (hn_is_dot(a, b, c)) {
        out1(s, '.');
        text1(s, '.');
        return;
    }
    out1(s, a);
    out1(s, b);
    out1(s, c);
    text1(s, a);
    text1(s, b);
    text1(s, b);
}

/* The final 0-3 bytes of an 8-bit run, flushed by the next plain character. */
static void emit_last_group(hn_state *s, const uint8_t *seq, size_t len)
{
    uint8_t c[3] = {0, 0, 0};
    size_t i;
    if (len == 3 && hn_is_dot(seq[0], seq[1], seq[2])) {
        out1(s, '.');
        text1(s, '.');
        return;
    }
    for (i = 0; i < len; i++)
        c[3 - len + i] = seq[i];
    if (len)
        outn(s, seq, len);
    else
        out1(s, 0);
    if (c[0])
        text1(s, c[0]);
    if (c[0] || c[1])
        text1(s, c[1]);
    text1(s, c[1]);
}

/* One word of text outside tags in a data: URI body (already lower-cased in out). */
static void emit_binary_text(hn_state *s, size_t start, size_t end)
{
    size_t i;
    int any = 0;
    for (i = start; i < end; i++)
        out1(s, hn_lower(s->buf[i]));
    for (i = start; i < end; i++)
        if (IS(s->buf[i], K_CTRL)) {
            any = 1;
            break;
        }
    if (!any) {
        for (i = start; i < end; i++)
            text1(s, hn_lower(s->buf[i]));
        s->space_written = 0;
        return;
    }
    for (i = start; i < end;) {
        if (IS(s->buf[i], K_CTRL)) {
            if (!(i == start && s->space_written))
                text1(s, ' ');
            while (i < end && IS(s->buf[i], K_CTRL))
                i++;
        } else {
            text1(s, hn_lower(s->buf[i]));
            i++;
        }
    }
    s->space_written = s->buf[end - 1] < 0x20;
}

static void space_before(hn_state *s)
{
    if (s->in_tag == T_OUTSIDE && !s->space_written) {
        text1(s, ' ');
        s->space_written = 1;
    }
}

/* ------------------------------------------------------------------ text states */

static size_t h_norm(hn_state *s, size_t pos)
{
    uint8_t c = s->buf[pos], *o, *t;
    size_t end, i;
    int outside = s->in_tag == T_OUTSIDE;

    if (c == '<') {
        out1(s, '<');
        space_before(s);
        s->tag_len = 0;
        return skip_then(s, pos + 1, S_TAG);
    }
    if (IS(c, K_WS)) {
        space_before(s);
        s->state = S_TRIM_WS;
        s->next = S_NORM;
        return pos;
    }
    if (c == '&') {
        space_before(s);
        s->state = S_CHAR_REF;
        s->next = S_NORM;
        return pos + 1;
    }
    if (c >= 0x80) {
        s->state = S_8BIT;
        s->next = S_NORM;
        s->mb[0] = c;
        s->mb_len = 1;
        return pos + 1;
    }
    if (s->binary) {
        end = pos;
        while (end < s->n && !IS(s->buf[end], K_SPAN) && s->buf[end] != '\r')
            end++;
        if (outside) {
            emit_binary_text(s, pos, end);
        } else {
            for (i = pos; i < end; i++)
                out1(s, s->buf[i] == '\'' ? '"' : hn_lower(s->buf[i]));
        }
        return end;
    }
    /* Several words at once, and the whitespace between them (CR anywhere but at the start
     * of a word belongs to the word, and is dropped). */
    end = pos;
    while (end < s->n && !IS(s->buf[end], K_SPAN))
        end++;
    for (;;) {
        size_t w = end;
        while (w < s->n && IS(s->buf[w], K_WS))
            w++;
        if (w == end || w >= s->n || IS(s->buf[w], K_SPAN))
            break;
        end = w + 1;
        while (end < s->n && !IS(s->buf[end], K_SPAN))
            end++;
    }
    visit(s, pos, end);
    if (!hn_room(s, &s->out, end - pos))
        return end;
    o = s->out.buf + s->out.len;
    if (!outside) {
        for (i = pos; i < end; i++) {
            c = s->buf[i];
            if (!IS(c, K_WS))
                *o++ = c == '\'' ? '"' : hn_lower(c);
        }
        s->out.len = (size_t)(o - s->out.buf);
        return end;
    }
    t = NULL;
    if (s->want_text) {
        if (!hn_room(s, &s->text, end - pos))
            return end;
        t = s->text.buf + s->text.len;
    }
    {
        int ows = 0, gap = 0, first = 1;
        uint8_t last = 0;
        for (i = pos; i < end; i++) {
            c = s->buf[i];
            if (c == '\r')
                continue;
            if (IS(c, K_WS)) {
                if (!ows)
                    *o++ = ' ';
                ows = 1;
            } else {
                *o++ = hn_lower(c);
                ows = 0;
            }
            if (IS(c, K_WS | K_CTRL)) {
                if (!gap && !(first && s->space_written) && t)
                    *t++ = ' ';
                gap = 1;
            } else {
                if (t)
                    *t++ = hn_lower(c);
                gap = 0;
            }
            first = 0;
            last = c;
        }
        s->space_written = last < 0x20;
    }
    s->out.len = (size_t)(o - s->out.buf);
    if (t)
        s->text.len = (size_t)(t - s->text.buf);
    return end;
}

static size_t h_eightbit(hn_state *s, size_t pos)
{
    size_t start = pos, end = pos, total, done = 0, i;
    uint8_t seq[3];
    size_t seqlen = 0;
#define VB(k) ((k) < s->mb_len ? s->mb[(k)] : s->buf[start + (k) - s->mb_len])
    while (end < s->n && s->buf[end] >= 0x80)
        end++;
    total = s->mb_len + (end - start);
    if (total > 3) {
        done = (total - 1) / 3 * 3;
        for (i = 0; i < done; i += 3)
            emit_group(s, VB(i), VB(i + 1), VB(i + 2));
    }
    for (i = done; i < total; i++)
        seq[seqlen++] = VB(i);
#undef VB
    memcpy(s->mb, seq, seqlen);
    s->mb_len = seqlen;
    pos = end;
    if (pos >= s->n || (s->buf[pos] == '\r' && !s->binary))
        return pos;
    if (seqlen == 1 && seq[0] == 0xa1 &&
        (s->buf[pos] == 'C' || s->buf[pos] == 'D' || s->buf[pos] == 'O')) {
        out1(s, '.');
        text1(s, '.');
        s->mb_len = 0;
        return pos + 1;
    }
    emit_last_group(s, seq, seqlen);
    s->mb_len = 0;
    s->state = s->next;
    s->next = S_NORM;
    return pos;
}

static size_t h_trim_ws(hn_state *s, size_t pos)
{
    size_t end = ws_end(s, pos);
    visit(s, pos, end);
    pos = end;
    if (pos < s->n) {
        if (s->in_tag == T_OUTSIDE)
            out1(s, ' ');
        s->state = s->next;
        s->next = S_BAD;
    }
    return pos;
}

static size_t h_comment(hn_state *s, size_t pos)
{
    const uint8_t *gt = memchr(s->buf + pos, '>', s->n - pos);
    size_t stop = gt ? (size_t)(gt - s->buf) : s->n, i;
    visit(s, pos, stop);
    if (s->in_tag != T_OUTSIDE) {
        for (i = pos; i < stop; i++) {
            uint8_t c = s->buf[i];
            if (!IS(c, K_WS))
                out1(s, c == '\'' ? '"' : hn_lower(c));
        }
        if (gt)
            out1(s, '>');
    }
    if (!gt)
        return stop;
    s->state = S_SKIP_WS;
    s->next = S_NORM;
    return stop + 1;
}

/* ------------------------------------------------------------------ tags */

static size_t h_tag(hn_state *s, size_t pos)
{
    uint8_t c = s->buf[pos];
    size_t end, room, i;
    if (!s->tag_len && c == '!') { /* "<!": a comment */
        if (s->in_tag != T_OUTSIDE)
            out1(s, '!');
        else if (s->out.len)
            s->out.len--; /* takes back the '<' */
        s->state = S_COMMENT;
        s->next = S_BAD;
        return pos + 1;
    }
    if (c == '>') {
        out1(s, '>');
        return skip_then(s, pos + 1, S_PROCESS_TAG);
    }
    if (IS(c, K_WS)) {
        s->arg_len = 0;
        return skip_then(s, pos, s->in_tag == T_OUTSIDE ? S_TAG_ARG : S_PROCESS_TAG);
    }
    if (s->in_tag != T_OUTSIDE && !s->tag_len && c != '/') {
        c = hn_lower(c);
        out1(s, c);
        s->tag[s->tag_len++] = c;
        s->state = S_NORM; /* "<x" inside a script is just text */
        return pos + 1;
    }
    end = pos;
    while (end < s->n && !IS(s->buf[end], K_TAG))
        end++;
    outn_lower(s, s->buf + pos, end - pos);
    room = HN_STRLEN - s->tag_len;
    for (i = pos; i < end && room; i++, room--)
        s->tag[s->tag_len++] = hn_lower(s->buf[i]);
    return end;
}

static size_t start_value(hn_state *s, size_t pos)
{
    out1(s, '=');
    s->escape = 0;
    s->quoted = Q_NONE;
    s->val_len = 0;
    return skip_then(s, pos, S_TAG_ARG_VAL);
}

static size_t h_tag_arg(hn_state *s, size_t pos)
{
    uint8_t c = s->buf[pos];
    size_t end, room, i;
    if (c == '=')
        return start_value(s, pos + 1);
    if (IS(c, K_WS))
        return skip_then(s, pos + 1, S_TAG_ARG_EQUAL);
    if (c == '>') {
        out1(s, '>');
        if (s->arg_len)
            add_attr(s, NULL, 0, 0);
        s->state = S_PROCESS_TAG;
        s->next = S_BAD;
        return pos + 1;
    }
    end = pos;
    while (end < s->n && !IS(s->buf[end], K_ARG))
        end++;
    if (!s->arg_len)
        out1(s, ' ');
    outn_lower(s, s->buf + pos, end - pos);
    room = HN_STRLEN - s->arg_len;
    for (i = pos; i < end && room; i++, room--)
        s->arg[s->arg_len++] = hn_lower(s->buf[i]);
    return end;
}

static size_t h_tag_arg_equal(hn_state *s, size_t pos)
{
    if (s->buf[pos] == '=')
        return start_value(s, pos + 1);
    if (s->arg_len)
        add_attr(s, NULL, 0, 0);
    s->arg_len = 0;
    s->state = S_TAG_ARG;
    s->next = S_BAD;
    return pos;
}

static void end_value(hn_state *s)
{
    add_attr(s, s->val, s->val_len, 1);
    s->arg_len = 0;
    s->state = S_SKIP_WS;
    s->next = S_TAG_ARG;
}

static int starts_data(const uint8_t *p, size_t n)
{
    return n >= 5 && !memcmp(p, "data:", 5);
}

static size_t h_tag_arg_val(hn_state *s, size_t pos)
{
    uint8_t c;
    size_t i;
    if ((s->val_len == 5 && !memcmp(s->val, "data:", 5)) ||
        (s->val_len == 6 && !memcmp(s->val, "\"data:", 6))) {
        /* An RFC 2397 data: URI; its body never reaches the outputs. */
        if (s->out.len)
            s->out.len--;
        if (s->quoted != Q_NONE)
            out1(s, '"');
        s->val_len = 0;
        s->state = S_RFC2397_TYPE;
        s->next = S_TAG_ARG;
        s->escape = s->buf[pos] == '\\';
        return pos;
    }
    if (!s->val_len && !s->mb2_len) {
        /* A whole quoted value, or a bare one followed by whitespace (not CR) or '>',
         * that needs none of the special cases below. */
        uint8_t q = s->buf[pos];
        size_t end = pos;
        if (q == '"' || q == '\'') {
            end = pos + 1;
            while (end < s->n && !IS(s->buf[end], K_VAL))
                end++;
            if (end < s->n && s->buf[end] == q && !starts_data(s->buf + pos + 1, end - pos - 1)) {
                size_t len = end - pos - 1;
                out1(s, '"');
                outn_lower(s, s->buf + pos + 1, len);
                out1(s, '"');
                add_val1(s, '"');
                add_val(s, s->buf + pos + 1, len);
                add_val1(s, '"');
                end_value(s);
                return skip_then(s, end + 1, S_TAG_ARG);
            }
        } else {
            while (end < s->n && !IS(s->buf[end], K_VAL))
                end++;
            if (end > pos && end < s->n && IS(s->buf[end], K_TAG) && s->buf[end] != '\r' &&
                !starts_data(s->buf + pos, end - pos)) {
                outn_lower(s, s->buf + pos, end - pos);
                add_val(s, s->buf + pos, end - pos);
                end_value(s);
                return end;
            }
        }
    }
    c = s->buf[pos];
    if (c == '&') {
        s->state = S_CHAR_REF;
        s->next = S_TAG_ARG_VAL;
        pos++;
    } else if (c == '\'' || c == '"') {
        int quote = c == '\'' ? Q_SINGLE : Q_DOUBLE;
        int closing = s->val_len && !s->escape && s->quoted == quote;
        if (!s->val_len)
            s->quoted = quote;
        out1(s, '"'); /* either quote is written as " */
        add_val1(s, '"');
        if (closing)
            end_value(s);
        pos++;
    } else if (IS(c, K_WS) || c == '>') {
        if (s->quoted == Q_NONE) {
            end_value(s);
        } else {
            /* Whitespace (or '>') inside quotes is kept once, and the rest of the value is
             * then read as unquoted. */
            out1(s, c);
            add_val1(s, c == '>' ? '>' : ' ');
            s->state = S_SKIP_WS;
            s->next = S_TAG_ARG_VAL;
            s->escape = 0;
            s->quoted = Q_NONE;
            pos++;
        }
    } else if (c >= 0x80) {
        size_t start = pos, end = pos, total, done;
        while (end < s->n && s->buf[end] >= 0x80)
            end++;
        total = s->mb2_len + (end - start);
        done = (total - 1) / 3 * 3;
#define VB(k) ((k) < s->mb2_len ? s->mb2[(k)] : s->buf[start + (k) - s->mb2_len])
        for (i = 0; i < done; i += 3) {
            uint8_t a = VB(i), b = VB(i + 1), d = VB(i + 2);
            if (hn_is_dot(a, b, d)) {
                out1(s, '.');
                add_val1(s, '.');
            } else {
                uint8_t g[3] = {a, b, d};
                outn(s, g, 3);
                add_val(s, g, 3);
            }
        }
        {
            uint8_t rest[3];
            size_t k = 0;
            for (i = done; i < total; i++)
                rest[k++] = VB(i);
            memcpy(s->mb2, rest, k);
            s->mb2_len = k;
        }
#undef VB
        pos = end;
    } else {
        size_t end, len;
        if (s->mb2_len) {
            size_t k = s->mb2_len;
            s->mb2_len = 0;
            if (k == 1 && s->mb2[0] == 0xa1 && (c == 'C' || c == 'D' || c == 'O')) {
                out1(s, '.');
                add_val1(s, '.');
                return pos + 1;
            }
            if (k == 3 && hn_is_dot(s->mb2[0], s->mb2[1], s->mb2[2])) {
                out1(s, '.');
                add_val1(s, '.');
            } else {
                outn(s, s->mb2, k);
                add_val(s, s->mb2, k);
            }
        }
        end = pos;
        while (end < s->n && !IS(s->buf[end], K_VAL))
            end++;
        len = end - pos;
        /* Stop where the value reaches 5 or 6 bytes: the next step checks for "data:". */
        if (s->val_len < 5) {
            if (len > 5 - s->val_len)
                len = 5 - s->val_len;
        } else if (s->val_len == 5) {
            if (len > 1)
                len = 1;
        }
        outn_lower(s, s->buf + pos, len);
        add_val(s, s->buf + pos, len);
        pos += len;
    }
    s->escape = pos < s->n && s->buf[pos] == '\\';
    return pos;
}

static int attr_is(hn_state *s, hn_attr *a, const char *v)
{
    size_t i, len = strlen(v);
    if (!a || !a->has_val || a->val_len != len)
        return 0;
    for (i = 0; i < len; i++)
        if (hn_lower(s->arena[a->val_off + i]) != (uint8_t)v[i])
            return 0;
    return 1;
}

/* "<tag name="value" ...>" with the attributes as parsed, values lower-cased. */
static void tag_text(hn_state *s)
{
    size_t i;
    out1(s, '<');
    outn(s, s->tag, s->tag_len);
    for (i = 0; i < s->nattrs; i++) {
        hn_attr *a = &s->attrs[i];
        out1(s, ' ');
        outn(s, s->arena + a->key_off, a->key_len);
        if (a->has_val) {
            outn(s, (const uint8_t *)"=\"", 2);
            outn_lower(s, s->arena + a->val_off, a->val_len);
            out1(s, '"');
        }
    }
    out1(s, '>');
}

static int tag_is(hn_state *s, const char *name)
{
    size_t len = strlen(name);
    return s->tag_len == len && !memcmp(s->tag, name, len);
}

static size_t h_process_tag(hn_state *s, size_t pos)
{
    s->state = S_SKIP_WS;
    s->next = S_NORM;
    if (s->tag_len && s->tag[0] == '/') {
        if (tag_is(s, "/script")) {
            s->in_tag = T_OUTSIDE;
            if (s->js) {
                /* The script text handed over ends here, so it includes "</script>". */
                feed_js(s, s->js_begin, pos);
                s->js_begin = -1;
                flush_js(s);
            }
        } else if (tag_is(s, "/style") && s->in_tag == T_STYLE) {
            /* The style text is measured back from here; when "</style>" ended in an
             * earlier piece, the length underflows and the normaliser gives up. */
            if ((Py_ssize_t)pos - 8 < s->style_begin) {
                s->aborted = 1;
                return pos;
            }
            s->in_tag = T_OUTSIDE;
        }
    } else if (tag_is(s, "script")) {
        hn_attr *lang = find_attr(s, "language");
        const char *plain = NULL;
        if (attr_is(s, lang, "jscript.encode"))
            plain = "javascript";
        else if (attr_is(s, lang, "vbscript.encode"))
            plain = "vbscript";
        if (plain) {
            size_t off;
            if (!arena_put(s, (const uint8_t *)plain, strlen(plain), &off))
                return pos;
            lang = find_attr(s, "language"); /* the arena may have moved, not the array */
            lang->val_off = off;
            lang->val_len = strlen(plain);
            s->state = S_SKIP_WS;
            s->next = S_JSDECODE;
            tag_text(s);
        }
        s->in_tag = T_SCRIPT;
        if (!s->js) {
            s->js = 1;
            s->js_begin = (Py_ssize_t)pos;
        }
    } else if (tag_is(s, "style")) {
        s->in_tag = T_STYLE;
        s->style_begin = (Py_ssize_t)pos;
    } else if (tag_is(s, "%@")) {
        hn_attr *lang = find_attr(s, "language");
        if (attr_is(s, lang, "jscript.encode") || attr_is(s, lang, "vbscript.encode")) {
            s->saved_next = s->next;
            s->next = s->state;
            s->look_for_screnc = 0;
            s->state = S_LOOKFOR_SCRENC;
        }
    } else if (tag_is(s, "a") || tag_is(s, "img")) {
        hn_attr *link = find_attr(s, s->tag_len == 1 ? "href" : "src");
        if (link && link->has_val && link->val_len) {
            textn(s, s->arena + link->val_off, link->val_len);
            text1(s, ' ');
            s->space_written = 1;
        }
    }
    s->nattrs = 0;
    s->arena_len = 0;
    return pos;
}

/* ------------------------------------------------------------------ character references */

static size_t h_char_ref(hn_state *s, size_t pos)
{
    if (s->buf[pos] == '#') {
        s->value = 0;
        s->hex = 0;
        s->state = S_CHAR_REF_DECODE;
        return pos + 1;
    }
    s->state = S_ENTITY_REF;
    return pos;
}

static void ref_done(hn_state *s, const uint8_t *piece, size_t len)
{
    outn(s, piece, len);
    if (s->next == S_TAG_ARG_VAL)
        add_val(s, piece, len);
    s->state = s->next;
    s->next = S_BAD;
}

/* "&" + the lower-cased entity name (+ ";"), written back when it is not a known one. */
static void ref_literal(hn_state *s, int semicolon)
{
    uint8_t piece[HN_STRLEN + 2];
    size_t i, len = 0;
    piece[len++] = '&';
    for (i = 0; i < s->entity_len; i++)
        piece[len++] = hn_lower(s->entity[i]);
    if (semicolon)
        piece[len++] = ';';
    ref_done(s, piece, len);
}

static size_t h_entity_ref(hn_state *s, size_t pos)
{
    uint8_t c = s->buf[pos];
    if (c == ';') {
        int code = hn_entity_code(s->entity, s->entity_len);
        if (code >= 0) {
            uint8_t piece[8];
            size_t len = hn_u16((uint64_t)code, piece);
            s->entity_len = 0;
            ref_done(s, piece, len);
        } else {
            ref_literal(s, 1);
            s->entity_len = 0;
        }
        return pos + 1;
    }
    if (IS(c, K_ENT) && s->entity_len < HN_STRLEN) {
        size_t end = pos;
        while (end < s->n && IS(s->buf[end], K_ENT) && s->entity_len < HN_STRLEN)
            s->entity[s->entity_len++] = s->buf[end++];
        return end;
    }
    /* Not a reference after all: written back as typed (lower-cased), without ';'. */
    ref_literal(s, 0);
    s->entity_len = 0;
    return pos;
}

static void overflow_ref(hn_state *s, uint64_t value)
{
    out1(s, (uint8_t)(value & 0xff));
    s->value = value;
    s->state = s->next;
    s->next = S_BAD;
}

static size_t h_char_ref_decode(hn_state *s, size_t pos)
{
    uint8_t c = s->buf[pos];
    if (s->value == 0 && (c == 'x' || c == 'X')) {
        s->hex = 1;
        return pos + 1;
    }
    if (c == ';') {
        uint64_t value = s->value;
        if (s->next == S_TAG_ARG_VAL)
            add_val1(s, (uint8_t)(value & 0xff));
        if (value < 0x80) {
            out1(s, hn_lower((uint8_t)value));
        } else {
            uint8_t piece[8];
            outn(s, piece, hn_u16(value, piece));
        }
        s->state = s->next;
        s->next = S_BAD;
        return pos + 1;
    }
    if ((c >= '0' && c <= '9') || (s->hex && IS(c, K_HEX))) {
        uint64_t value = s->value;
        unsigned base = s->hex ? 16 : 10;
        size_t end = pos, skipped = 0, ndig, i;
        while (end < s->n && (s->hex ? IS(s->buf[end], K_HEX) : (s->buf[end] >= '0' && s->buf[end] <= '9')))
            end++;
        if (value == 0)
            while (pos + skipped < end && s->buf[pos + skipped] == '0')
                skipped++;
        ndig = end - pos - skipped;
        if (ndig <= 6 && value < (1ULL << 32)) {
            for (i = pos + skipped; i < end; i++)
                value = value * base + (uint64_t)hn_hexval(s->buf[i]);
            s->value = value;
            return end;
        }
        /* Long numbers: the overflow guards end the reference within about 20 digits. */
        for (i = pos + skipped; i < end; i++) {
            uint64_t inc;
            if (s->hex && value < HN_INT64_MAX / 16)
                value *= 16;
            else if (value < HN_INT64_MAX / 10)
                value *= 10;
            else {
                overflow_ref(s, value);
                return i + 1;
            }
            inc = (uint64_t)hn_hexval(s->buf[i]);
            if (value > HN_INT64_MAX - inc) {
                overflow_ref(s, value);
                return i + 1;
            }
            value += inc;
        }
        s->value = value;
        return end;
    }
    out1(s, (uint8_t)(s->value & 0xff)); /* the reference ends without ';' */
    s->state = s->next;
    s->next = S_BAD;
    return pos;
}

/* ------------------------------------------------------------------ Script Encoder */

static const uint8_t *find_marker(hn_state *s, size_t pos)
{
    const uint8_t *p = s->buf + pos, *end = s->buf + s->n;
    while (end - p >= 4) {
        const uint8_t *q = memchr(p, '#', (size_t)(end - p) - 3);
        if (!q)
            return NULL;
        if (q[1] == '@' && q[2] == '~' && q[3] == '^')
            return q;
        p = q + 1;
    }
    return NULL;
}

static size_t h_lookfor_screnc(hn_state *s, size_t pos)
{
    const uint8_t *found = find_marker(s, pos);
    s->look_for_screnc = 1;
    s->ptr_screnc = -1;
    if (found) {
        size_t at = (size_t)(found - s->buf);
        s->buf[at] = '/';
        s->buf[at + 1] = '/';
        s->ptr_screnc = (Py_ssize_t)(at + 4);
    }
    s->state = s->next;
    s->next = s->saved_next;
    return pos;
}

static size_t h_jsdecode(hn_state *s, size_t pos)
{
    const uint8_t *found = find_marker(s, pos);
    size_t stop = found ? (size_t)(found - s->buf) : s->n, i;
    visit(s, pos, stop);
    for (i = pos; i < stop; i++)
        if (s->binary || s->buf[i] != '\r')
            out1(s, hn_lower(s->buf[i]));
    if (!found)
        return stop;
    s->buf[stop] = '/'; /* the JS normaliser then reads the marker as a comment */
    s->buf[stop + 1] = '/';
    s->state = S_JSDECODE_LENGTH;
    s->next = S_BAD;
    return stop + 4;
}

static int b64(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* The decoded length in a Script Encoder header, with libclamav's arithmetic (an invalid
 * digit counts as -1 in some terms). */
static uint32_t screnc_length(const uint8_t *h)
{
    int64_t b[6], n;
    int i;
    for (i = 0; i < 6; i++)
        b[i] = b64(h[i]);
    n = b[0] < 0 ? 0 : b[0] << 2;
    n += b[1] < 0 ? -1 : b[1] >> 4;
    n += (b[1] < 0 ? 15 : (b[1] & 15)) << 12;
    n += (b[2] < 0 ? 0 : (b[2] >> 2)) << 8;
    n += (int64_t)(b[2] < 0 ? 3 : (b[2] & 3)) << 22;
    n += b[3] < 0 ? 0 : b[3] << 16;
    n += (b[4] < 0 ? 0 : b[4] << 2) << 24;
    n += (b[5] < 0 ? 0 : (b[5] >> 4)) << 24;
    return (uint32_t)((uint64_t)n & 0xffffffffu);
}

static size_t h_jsdecode_length(hn_state *s, size_t pos)
{
    if (s->n - pos < 8) {
        s->state = S_NORM;
        s->next = S_BAD;
        return pos;
    }
    s->screnc_len = screnc_length(s->buf + pos);
    s->screnc_pos = 0;
    s->state = S_JSDECODE_DECRYPT;
    s->next = S_BAD;
    s->in_screnc = 1;
    s->buf[pos + 7] = '\n'; /* ends the marker's comment for the JS normaliser */
    return pos + 8;
}

/* Decodes in place from pos (the output is never longer than what it replaces); the
 * machine then reads the plain text there. */
static void screnc_decode(hn_state *s, size_t pos)
{
    uint32_t length = s->screnc_len;
    unsigned tp = s->screnc_pos;
    size_t src = pos, w = pos, n = s->n;
    uint8_t *b = s->buf;
    while (length > 0 && src < n) {
        uint8_t c = b[src];
        if (c == '\n' || c == '\r') {
            while (src < n && (b[src] == '\n' || b[src] == '\r'))
                src++;
        } else if (c == '@') { /* @x: an escaped character */
            uint8_t d = 0xff;
            int k;
            if (src + 1 < n)
                for (k = 0; k < 5; k++)
                    if (hn_screnc_escapes[k][0] == b[src + 1])
                        d = hn_screnc_escapes[k][1];
            b[w++] = d;
            tp = (tp + 1) % 64;
            src = src + 2 < n ? src + 2 : n;
            length -= 2; /* wraps, as in libclamav */
        } else if (c >= 0x80) { /* copied with the byte after it */
            if (src + 1 >= n) {
                b[w++] = c;
                src++;
                break;
            }
            b[w++] = b[src++];
            b[w++] = b[src++];
            length--;
        } else {
            while (length > 0 && src < n && !IS(b[src], K_PLAIN)) {
                b[w++] = hn_screnc_tables[hn_screnc_order[tp]][b[src++]];
                tp = (tp + 1) % 64;
                length--;
            }
        }
    }
    s->screnc_len = length;
    s->screnc_pos = tp;
    if (length) {
        s->n = w; /* the rest of this piece is not looked at */
        return;
    }
    if (n - src >= 12)
        src += 12; /* checksum and "^#~@" terminator */
    memmove(b + w, b + src, n - src);
    s->n = w + (n - src);
}

static size_t h_jsdecode_decrypt(hn_state *s, size_t pos)
{
    screnc_decode(s, pos);
    s->state = S_NORM;
    s->next = S_BAD;
    if (!s->screnc_len)
        s->in_screnc = 0;
    return pos;
}

/* ------------------------------------------------------------------ data: URIs */

static size_t h_rfc2397_type(hn_state *s, size_t pos)
{
    uint8_t c = s->buf[pos];
    if (c == '\'' || c == '"') {
        int quote = c == '\'' ? Q_SINGLE : Q_DOUBLE;
        if (!s->escape && s->quoted == quote) { /* ends before any data */
            s->arg_len = 0;
            s->state = S_SKIP_WS;
            s->next = S_TAG_ARG;
        } else {
            add_val1(s, '"');
        }
        pos++;
    } else if (IS(c, K_WS) || c == '>') {
        if (s->quoted == Q_NONE) {
            s->arg_len = 0;
            s->state = S_SKIP_WS;
            s->next = S_TAG_ARG;
        } else {
            add_val1(s, c == '>' ? '>' : ' ');
            s->state = S_SKIP_WS;
            s->next = S_RFC2397_TYPE;
            s->escape = 0;
            s->quoted = Q_NONE;
            pos++;
        }
    } else if (c == ',') { /* the data starts */
        s->state = S_RFC2397_INIT;
        s->next = S_BAD;
        pos++;
    } else {
        size_t end = pos;
        while (end < s->n && !IS(s->buf[end], K_TYPE)) {
            add_val1(s, hn_lower(s->buf[end]));
            end++;
        }
        pos = end;
    }
    s->escape = pos < s->n && s->buf[pos] == '\\';
    return pos;
}

static size_t h_rfc2397_data(hn_state *s, size_t pos)
{
    uint8_t c = s->buf[pos];
    if (c == '&') { /* character references inside data: URIs do reach nocomment */
        s->state = S_CHAR_REF;
        s->next = S_RFC2397_DATA;
        pos++;
    } else if (c == '%') {
        s->esc_len = 0;
        s->value = 0;
        s->state = S_ESCAPE_CHAR;
        s->next = S_RFC2397_ESC;
        pos++;
    } else if (c == '\'' || c == '"') {
        int quote = c == '\'' ? Q_SINGLE : Q_DOUBLE;
        if (!s->escape && s->quoted == quote)
            s->state = S_RFC2397_FINISH;
        pos++;
    } else if (IS(c, K_WS) || c == '>') {
        if (s->quoted == Q_NONE)
            s->state = S_RFC2397_FINISH; /* the '>' (or space) is consumed by the data */
        pos++;
    } else {
        while (pos < s->n && !IS(s->buf[pos], K_DATA))
            pos++;
    }
    s->escape = pos < s->n && s->buf[pos] == '\\';
    return pos;
}

static size_t h_escape_char(hn_state *s, size_t pos)
{
    uint8_t c = s->buf[pos];
    s->esc_len++;
    s->value *= 16;
    if (IS(c, K_HEX))
        s->value += (uint64_t)hn_hexval(c);
    else
        s->state = s->next;
    if (s->esc_len == 2)
        s->state = s->next;
    return pos + 1;
}

/* ------------------------------------------------------------------ driver */

static size_t step(hn_state *s, int state, size_t pos)
{
    switch (state) {
    case S_NORM:
        return h_norm(s, pos);
    case S_8BIT:
        return h_eightbit(s, pos);
    case S_COMMENT:
        return h_comment(s, pos);
    case S_CHAR_REF:
        return h_char_ref(s, pos);
    case S_ENTITY_REF:
        return h_entity_ref(s, pos);
    case S_SKIP_WS:
        return skip_then(s, pos, s->next);
    case S_TRIM_WS:
        return h_trim_ws(s, pos);
    case S_TAG:
        return h_tag(s, pos);
    case S_TAG_ARG:
        return h_tag_arg(s, pos);
    case S_TAG_ARG_VAL:
        return h_tag_arg_val(s, pos);
    case S_TAG_ARG_EQUAL:
        return h_tag_arg_equal(s, pos);
    case S_PROCESS_TAG:
        return h_process_tag(s, pos);
    case S_CHAR_REF_DECODE:
        return h_char_ref_decode(s, pos);
    case S_LOOKFOR_SCRENC:
        return h_lookfor_screnc(s, pos);
    case S_JSDECODE:
        return h_jsdecode(s, pos);
    case S_JSDECODE_LENGTH:
        return h_jsdecode_length(s, pos);
    case S_JSDECODE_DECRYPT:
        return h_jsdecode_decrypt(s, pos);
    case S_RFC2397_TYPE:
        return h_rfc2397_type(s, pos);
    case S_RFC2397_INIT:
        s->state = S_RFC2397_DATA;
        s->binary = 1;
        return pos;
    case S_RFC2397_DATA:
        return h_rfc2397_data(s, pos);
    case S_RFC2397_FINISH:
        s->state = S_SKIP_WS;
        s->next = S_TAG_ARG;
        s->escape = 0;
        s->quoted = Q_NONE;
        s->binary = 0;
        return pos;
    case S_RFC2397_ESC:
        s->state = S_RFC2397_DATA;
        return pos;
    case S_ESCAPE_CHAR:
        return h_escape_char(s, pos);
    default:
        s->aborted = 1;
        return pos;
    }
}

static size_t run_piece(hn_state *s, size_t pos)
{
    while (pos < s->n) {
        int state = s->state;
        uint8_t c;
        if (state == S_BAD) {
            s->aborted = 1; /* libclamav gives up here, keeping what it wrote */
            return pos;
        }
        c = s->buf[pos];
        if (!s->binary) {
            if (c == '\r') { /* CR is invisible outside data: URIs */
                pos++;
                continue;
            }
            if (c == '\n')
                s->buf[pos] = ' ';
        }
        pos = step(s, state, pos);
        if (s->aborted)
            break;
    }
    return pos;
}

static void do_piece(hn_state *s)
{
    size_t pos;
    if (s->in_tag == T_STYLE)
        s->style_begin = 0;
    pos = ws_end(s, 0);
    for (;;) {
        pos = run_piece(s, pos);
        if (s->aborted)
            return;
        if (s->js) {
            feed_js(s, s->js_begin, s->n);
            s->js_begin = -1;
            if (s->in_tag == T_OUTSIDE)
                flush_js(s);
            if (s->aborted)
                return;
        }
        if (s->in_tag == T_STYLE && (Py_ssize_t)pos < s->style_begin) {
            s->aborted = 1;
            return;
        }
        if (s->look_for_screnc && s->ptr_screnc >= 0) {
            /* Go back to the encoded block found in this piece and decode it. */
            pos = ws_end(s, (size_t)s->ptr_screnc);
            s->ptr_screnc = -1;
            s->state = S_JSDECODE_LENGTH;
            s->next = S_BAD;
            continue;
        }
        break;
    }
    if (s->in_screnc) {
        s->state = S_JSDECODE_DECRYPT;
        s->next = S_BAD;
    } else if (s->look_for_screnc && s->ptr_screnc < 0 && s->state != S_LOOKFOR_SCRENC) {
        s->saved_next = s->next;
        s->next = s->state;
        s->state = S_LOOKFOR_SCRENC;
    }
    if (s->next == s->state)
        s->next = S_BAD;
}

/* Cuts data into the pieces cli_readchunk hands over (NULs dropped, a piece that would
 * end inside a word cut after its last whitespace byte) and runs each. */
static void normalise(hn_state *s, const uint8_t *data, size_t n)
{
    size_t off = 0;
    while (off < n && !s->aborted) {
        size_t have = 0, i = off, end, cut;
        while (i < n && have < HN_CHUNK) {
            if (data[i])
                s->buf[have++] = data[i];
            i++;
        }
        end = have == HN_CHUNK ? i : n;
        off = end;
        if (end < n && !IS(data[end], K_WS) && have) {
            cut = have;
            while (cut > 0 && !IS(s->buf[cut - 1], K_WS))
                cut--;
            /* cut - 1 is the last whitespace byte (if any) */
            if (cut >= 2 && cut < have) {
                off -= have - cut; /* in data's coordinates, as libclamav counts it */
                have = cut;
            }
        }
        s->n = have;
        do_piece(s);
    }
    if (!s->aborted && s->entity_len) {
        /* An entity cut off by the end of the file is still decoded. */
        int code = hn_entity_code(s->entity, s->entity_len);
        if (code >= 0) {
            uint8_t piece[8];
            outn(s, piece, hn_u16((uint64_t)code, piece));
        } else {
            size_t k;
            out1(s, '&');
            for (k = 0; k < s->entity_len; k++)
                out1(s, hn_lower(s->entity[k]));
        }
    }
    if (!s->error)
        flush_js(s);
}

static PyObject *hn_normalise(PyObject *self, PyObject *args)
{
    Py_buffer data;
    int want_text;
    Py_ssize_t limit;
    PyObject *callback, *out = NULL, *text = NULL, *res = NULL;
    hn_state *s;
    (void)self;

    if (!PyArg_ParseTuple(args, "y*pnO:normalise", &data, &want_text, &limit, &callback))
        return NULL;
    if (limit < 0 || !PyCallable_Check(callback)) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "normalise: bad limit or callback");
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    s->out.cap = s->text.cap = (size_t)limit;
    s->want_text = want_text;
    s->state = S_NORM;
    s->next = s->saved_next = S_BAD;
    s->ptr_screnc = s->js_begin = -1;
    s->callback = callback;

    s->ts = PyEval_SaveThread();
    normalise(s, (const uint8_t *)data.buf, (size_t)data.len);
    PyEval_RestoreThread(s->ts);

    PyBuffer_Release(&data);
    free(s->attrs);
    free(s->arena);
    if (s->error == E_PYTHON) {
        /* the callback's exception is set */
    } else if (s->error == E_MEMORY) {
        PyErr_NoMemory();
    } else if (s->error == E_LIMIT) {
        PyErr_SetString(PyExc_ValueError, "normalised HTML exceeds the output limit");
    } else {
        out = vg_out_finish(&s->out);
        if (out && want_text) {
            text = vg_out_finish(&s->text);
        } else if (out) {
            text = Py_NewRef(Py_None);
        }
        if (out && text)
            res = PyTuple_Pack(2, out, text);
    }
    free(s->out.buf);
    free(s->text.buf);
    Py_XDECREF(out);
    Py_XDECREF(text);
    free(s);
    return res;
}

static PyMethodDef hn_methods[] = {
    {"normalise", hn_normalise, METH_VARARGS,
     "normalise(data, want_notags, limit, script_sink) -> (nocomment, notags or None)\n\n"
     "Runs the HTML normaliser over data. Script text is passed to script_sink(piece) as\n"
     "it is found, and script_sink(None) ends a script. Each output is limited to limit\n"
     "bytes (ValueError beyond it)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hn_module = {
    PyModuleDef_HEAD_INIT, "_htmlnorm", "HTML normaliser state machine (see _htmlnorm.c).",
    -1, hn_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__htmlnorm(void)
{
    hn_init_classes();
    return PyModule_Create(&hn_module);
}
