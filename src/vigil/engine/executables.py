"""Executable header facts for the matcher: entry point, sections, VersionInfo, import hash.

Pure functions over bytes that follow libclamav 1.4's PE, ELF and Mach-O parsers, quirks
included, so offsets and hashes agree with clamscan; imports only the standard library.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ExeInfo",
    "Section",
    "macho_fat_members",
    "parse_elf",
    "parse_executable",
    "parse_macho",
    "parse_pe",
    "section_hash_inputs",
]

_M32 = 0xFFFF_FFFF
_M64 = 0xFFFF_FFFF_FFFF_FFFF

# libclamav never hashes a section larger than this (CLI_MAX_ALLOCATION).
_MAX_HASHED_SECTION = 1 << 30
# Work caps for hostile files. libclamav has none here, but C affords loops that Python
# cannot; real executables stay orders of magnitude below them.
_MAX_THUNKS = 1 << 20
_MAX_IMPORT_STRING = 1 << 24
_MAX_RESOURCE_ENTRIES = 1 << 20

_LE16 = struct.Struct("<H")
_LE32 = struct.Struct("<I")
_PE_SECTION = struct.Struct("<8xIIII16x")
_PE_IMPORT = struct.Struct("<IIIII")


@dataclass(frozen=True, slots=True)
class Section:
    """One section as libclamav keeps it (PE values already aligned and clipped to the file)."""

    raw_offset: int
    raw_size: int
    virtual_address: int
    virtual_size: int


@dataclass(frozen=True, slots=True)
class ExeInfo:
    """What libclamav's header parser yields for one executable.

    ``entry_point`` is the file offset libclamav uses for ``EP`` offsets and ``EntryPoint``
    (0 when the format gives none, e.g. x86 Mach-O); ``sections`` back ``Sx``/``SEx``/``SL``
    and ``NumberOfSections``. ``imports`` is the normalised import string that MD5, SHA-1 and
    SHA-256 ``.imp`` signatures hash (``imphash`` is its MD5 and length).

    ``target_ok`` is False only for a PE that libclamav's scan-time parser accepts (so
    ``.mdb``/``.imp`` still apply) while its offset parser rejects it: then treat
    EP/S/SL/SE/VI/EOF-n offsets and EntryPoint/NumberOfSections as for an unparsed file.
    """

    kind: str
    entry_point: int | None
    sections: tuple[Section, ...]
    pe64: bool = False
    version_info: tuple[int, ...] = ()
    imphash: tuple[str, int] | None = None
    imports: bytes | None = None
    target_ok: bool = True


def parse_executable(data: bytes | memoryview) -> ExeInfo | None:
    """Parse a PE, ELF or thin Mach-O; None for anything else, fat Mach-O included.

    libclamav's Mach-O header parser rejects the fat magic, so offsets never resolve on a
    universal binary itself; its members are scanned as child objects (see
    :func:`macho_fat_members`).
    """
    head = bytes(_view(data)[:4])
    # cli_peheader also accepts "ZM", but libclamav never types such a file as a PE.
    if head[:2] == b"MZ":
        return parse_pe(data)
    if head == b"\x7fELF":
        return parse_elf(data)
    if head in (b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xce", b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf"):
        return parse_macho(data)
    return None


def section_hash_inputs(info: ExeInfo) -> list[tuple[int, int]]:
    """(offset, size) of each section whose raw bytes ``.mdb``/``.msb`` signatures hash.

    PE only, in header order, sections with raw data only. PE32+ is included: 1.4.6 alerts on
    section hashes of 64-bit files although the manual says otherwise; only ``.imp`` is
    limited to PE32.
    """
    if info.kind != "pe":
        return []
    return [
        (s.raw_offset, s.raw_size) for s in info.sections if 0 < s.raw_size <= _MAX_HASHED_SECTION
    ]


def _view(data: bytes | memoryview) -> memoryview:
    view = memoryview(data)
    if not view.c_contiguous:
        return memoryview(view.tobytes())
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _fits(size: int, at: int, length: int) -> bool:
    """True when [at, at+length) is non-empty and inside a buffer of ``size`` bytes."""
    return length > 0 and at >= 0 and at + length <= size


def _align_down(value: int, alignment: int) -> int:
    return (value // alignment) * alignment if alignment else value


def _align_up(value: int, alignment: int) -> int:
    # 32-bit arithmetic on purpose: a huge size can wrap to 0, as in libclamav.
    if not alignment:
        return value
    return ((value // alignment + (value % alignment != 0)) * alignment) & _M32


# --------------------------------------------------------------------------------------------
# PE


@dataclass(frozen=True, slots=True)
class _PeHeaders:
    pe64: bool
    entry_rva: int
    header_size: int
    section_alignment: int
    file_alignment: int
    directories: tuple[tuple[int, int], ...]
    raw_sections: tuple[tuple[int, int, int, int], ...]


class _RvaMap:
    """libclamav's cli_rawaddr: RVA to file offset, last matching section wins.

    A sorted interval table replaces the linear search so that files with thousands of
    sections and imports stay cheap.
    """

    __slots__ = ("_answers", "_file_size", "_header_size", "_points", "_sections")

    def __init__(self, sections: Sequence[Section], header_size: int, file_size: int) -> None:
        self._header_size = header_size
        self._file_size = file_size
        self._sections = sections
        spans = [
            (s.virtual_address, s.virtual_address + s.raw_size, index)
            for index, s in enumerate(sections)
            if s.raw_size
        ]
        points = sorted({p for start, end, _ in spans for p in (start, end)})
        answers: list[int] = []
        spans.sort()
        active: list[tuple[int, int]] = []
        next_span = 0
        for point in points:
            while next_span < len(spans) and spans[next_span][0] <= point:
                start, end, index = spans[next_span]
                heapq.heappush(active, (-index, end))
                next_span += 1
            while active and active[0][1] <= point:
                heapq.heappop(active)
            # Stale entries below the top are fine: only the top is ever read, and it is
            # popped as soon as it expires.
            answers.append(-active[0][0] if active else -1)
        self._points = points
        self._answers = answers

    def offset(self, rva: int) -> int | None:
        if rva < self._header_size:
            return rva if rva < self._file_size else None
        slot = bisect.bisect_right(self._points, rva) - 1
        if slot < 0 or self._answers[slot] < 0:
            return None
        section = self._sections[self._answers[slot]]
        return (rva - section.virtual_address + section.raw_offset) & _M32


def _pe_headers(view: memoryview) -> _PeHeaders | None:
    """The fixed part of libclamav's cli_peheader, up to the raw section table."""
    size = len(view)
    if size < 64 or bytes(view[:2]) not in (b"MZ", b"ZM"):
        return None
    (lfanew,) = _LE32.unpack_from(view, 60)
    if not lfanew or not _fits(size, lfanew, 24) or bytes(view[lfanew : lfanew + 4]) != b"PE\0\0":
        return None
    nsections, _, _, _, optional_size = struct.unpack_from("<HIIIH", view, lfanew + 6)
    if nsections == 0 or optional_size < 96:
        return None
    optional = lfanew + 24
    if not _fits(size, optional, 96):
        return None
    pe64 = _LE16.unpack_from(view, optional)[0] == 0x20B
    stored = 96
    if pe64:
        if optional_size < 112 or not _fits(size, optional + 96, 16):
            return None
        stored = 112
    (entry_rva,) = _LE32.unpack_from(view, optional + 16)
    section_alignment, file_alignment = struct.unpack_from("<II", view, optional + 32)
    (header_size,) = _LE32.unpack_from(view, optional + 60)
    (ndirs,) = _LE32.unpack_from(view, optional + stored - 4)
    ndirs = min(ndirs, 16)
    if optional_size < stored + 8 * ndirs:
        return None
    if ndirs and not _fits(size, optional + stored, 8 * ndirs):
        return None
    directories = [struct.unpack_from("<II", view, optional + stored + 8 * i) for i in range(ndirs)]
    directories += [(0, 0)] * (16 - ndirs)
    table = optional + optional_size
    if not _fits(size, table, 40 * nsections):
        return None
    raw_sections = tuple(_PE_SECTION.iter_unpack(view[table : table + 40 * nsections]))
    # libclamav's "file alignment fallback": one section aligned to 0x200 but not to the
    # declared FileAlignment switches the whole file to 0x200.
    for _, _, raw_size, raw_pointer in raw_sections:
        if file_alignment == 0x200:
            break
        if file_alignment and raw_size and raw_pointer % file_alignment and not raw_pointer % 0x200:
            file_alignment = 0x200
    return _PeHeaders(
        pe64=pe64,
        entry_rva=entry_rva,
        header_size=_align_up(header_size, section_alignment),
        section_alignment=section_alignment,
        file_alignment=file_alignment,
        directories=tuple(directories),
        raw_sections=raw_sections,
    )


def _pe_sections(headers: _PeHeaders, file_size: int, remove_missing: bool) -> list[Section] | None:
    """Aligned, clipped sections; None where libclamav reports a broken PE.

    The offset parser (``remove_missing`` False) keeps sections lying past the end of the
    file with raw size 0; the scan-time parser drops them, and fails if it must drop the only
    section left.
    """
    salign, falign = headers.section_alignment, headers.file_alignment
    sections: list[Section] = []
    remaining = len(headers.raw_sections)
    for vsize, vaddr, raw_size, raw_pointer in headers.raw_sections:
        rva = _align_down(vaddr, salign)
        vsz = _align_up(vsize, salign)
        raw = _align_down(raw_pointer, falign)
        rsz = _align_up(raw_size, falign)
        ursz = raw_size
        if rsz:
            if raw >= file_size or raw_pointer >= file_size:
                if remove_missing:
                    if remaining == 1:
                        return None
                    remaining -= 1
                    continue
                rsz = ursz = 0
            else:
                rsz = min(rsz, file_size - raw)
                ursz = min(ursz, file_size - raw_pointer)
        if not vsz and rsz:
            vsz = _align_up(ursz, salign)
        if vaddr >> 31 or vsize >> 31 or (rsz and raw_pointer >> 31) or ursz >> 31:
            return None
        sections.append(Section(raw, rsz, rva, vsz))
    return sections


def _cstring(view: memoryview, at: int, length: int) -> bytes:
    chunk = bytes(view[at : at + length])
    end = chunk.find(b"\0")
    return chunk if end < 0 else chunk[:end]


def _ordinal_table(text: str) -> dict[int, str]:
    return {int(number): name for number, name in (item.split(":") for item in text.split())}


# Names libclamav substitutes for imports by ordinal from these two DLLs (pe.c pe_ordinal);
# every other ordinal import becomes "ord<N>".
_WS2_32_ORDINALS = _ordinal_table(
    "1:accept 2:bind 3:closesocket 4:connect 5:getpeername 6:getsockname 7:getsockopt 8:htonl "
    "9:htons 10:ioctlsocket 11:inet_addr 12:inet_ntoa 13:listen 14:ntohl 15:ntohs 16:recv "
    "17:recvfrom 18:select 19:send 20:sendto 21:setsockopt 22:shutdown 23:socket "
    "24:GetAddrInfoW 25:GetNameInfoW 26:WSApSetPostRoutine 27:FreeAddrInfoW "
    "28:WPUCompleteOverlappedRequest 29:WSAAccept 30:WSAAddressToStringA 31:WSAAddressToStringW "
    "32:WSACloseEvent 33:WSAConnect 34:WSACreateEvent 35:WSADuplicateSocketA "
    "36:WSADuplicateSocketW 37:WSAEnumNameSpaceProvidersA 38:WSAEnumNameSpaceProvidersW "
    "39:WSAEnumNetworkEvents 40:WSAEnumProtocolsA 41:WSAEnumProtocolsW 42:WSAEventSelect "
    "43:WSAGetOverlappedResult 44:WSAGetQOSByName 45:WSAGetServiceClassInfoA "
    "46:WSAGetServiceClassInfoW 47:WSAGetServiceClassNameByClassIdA "
    "48:WSAGetServiceClassNameByClassIdW 49:WSAHtonl 50:WSAHtons 51:gethostbyaddr "
    "52:gethostbyname 53:getprotobyname 54:getprotobynumber 55:getservbyname 56:getservbyport "
    "57:gethostname 58:WSAInstallServiceClassA 59:WSAInstallServiceClassW 60:WSAIoctl "
    "61:WSAJoinLeaf 62:WSALookupServiceBeginA 63:WSALookupServiceBeginW 64:WSALookupServiceEnd "
    "65:WSALookupServiceNextA 66:WSALookupServiceNextW 67:WSANSPIoctl 68:WSANtohl 69:WSANtohs "
    "70:WSAProviderConfigChange 71:WSARecv 72:WSARecvDisconnect 73:WSARecvFrom "
    "74:WSARemoveServiceClass 75:WSAResetEvent 76:WSASend 77:WSASendDisconnect 78:WSASendTo "
    "79:WSASetEvent 80:WSASetServiceA 81:WSASetServiceW 82:WSASocketA 83:WSASocketW "
    "84:WSAStringToAddressA 85:WSAStringToAddressW 86:WSAWaitForMultipleEvents "
    "87:WSCDeinstallProvider 88:WSCEnableNSProvider 89:WSCEnumProtocols 90:WSCGetProviderPath "
    "91:WSCInstallNameSpace 92:WSCInstallProvider 93:WSCUnInstallNameSpace 94:WSCUpdateProvider "
    "95:WSCWriteNameSpaceOrder 96:WSCWriteProviderOrder 97:freeaddrinfo 98:getaddrinfo "
    "99:getnameinfo 101:WSAAsyncSelect 102:WSAAsyncGetHostByAddr 103:WSAAsyncGetHostByName "
    "104:WSAAsyncGetProtoByNumber 105:WSAAsyncGetProtoByName 106:WSAAsyncGetServByPort "
    "107:WSAAsyncGetServByName 108:WSACancelAsyncRequest 109:WSASetBlockingHook "
    "110:WSAUnhookBlockingHook 111:WSAGetLastError 112:WSASetLastError "
    "113:WSACancelBlockingCall 114:WSAIsBlocking 115:WSAStartup 116:WSACleanup 151:__WSAFDIsSet "
    "500:WEP"
)

_OLEAUT32_ORDINALS = _ordinal_table(
    "2:SysAllocString 3:SysReAllocString 4:SysAllocStringLen 5:SysReAllocStringLen "
    "6:SysFreeString 7:SysStringLen 8:VariantInit 9:VariantClear 10:VariantCopy "
    "11:VariantCopyInd 12:VariantChangeType 13:VariantTimeToDosDateTime "
    "14:DosDateTimeToVariantTime 15:SafeArrayCreate 16:SafeArrayDestroy 17:SafeArrayGetDim "
    "18:SafeArrayGetElemsize 19:SafeArrayGetUBound 20:SafeArrayGetLBound 21:SafeArrayLock "
    "22:SafeArrayUnlock 23:SafeArrayAccessData 24:SafeArrayUnaccessData 25:SafeArrayGetElement "
    "26:SafeArrayPutElement 27:SafeArrayCopy 28:DispGetParam 29:DispGetIDsOfNames 30:DispInvoke "
    "31:CreateDispTypeInfo 32:CreateStdDispatch 33:RegisterActiveObject 34:RevokeActiveObject "
    "35:GetActiveObject 36:SafeArrayAllocDescriptor 37:SafeArrayAllocData "
    "38:SafeArrayDestroyDescriptor 39:SafeArrayDestroyData 40:SafeArrayRedim "
    "41:SafeArrayAllocDescriptorEx 42:SafeArrayCreateEx 43:SafeArrayCreateVectorEx "
    "44:SafeArraySetRecordInfo 45:SafeArrayGetRecordInfo 46:VarParseNumFromStr "
    "47:VarNumFromParseNum 48:VarI2FromUI1 49:VarI2FromI4 50:VarI2FromR4 51:VarI2FromR8 "
    "52:VarI2FromCy 53:VarI2FromDate 54:VarI2FromStr 55:VarI2FromDisp 56:VarI2FromBool "
    "57:SafeArraySetIID 58:VarI4FromUI1 59:VarI4FromI2 60:VarI4FromR4 61:VarI4FromR8 "
    "62:VarI4FromCy 63:VarI4FromDate 64:VarI4FromStr 65:VarI4FromDisp 66:VarI4FromBool "
    "67:SafeArrayGetIID 68:VarR4FromUI1 69:VarR4FromI2 70:VarR4FromI4 71:VarR4FromR8 "
    "72:VarR4FromCy 73:VarR4FromDate 74:VarR4FromStr 75:VarR4FromDisp 76:VarR4FromBool "
    "77:SafeArrayGetVartype 78:VarR8FromUI1 79:VarR8FromI2 80:VarR8FromI4 81:VarR8FromR4 "
    "82:VarR8FromCy 83:VarR8FromDate 84:VarR8FromStr 85:VarR8FromDisp 86:VarR8FromBool "
    "87:VarFormat 88:VarDateFromUI1 89:VarDateFromI2 90:VarDateFromI4 91:VarDateFromR4 "
    "92:VarDateFromR8 93:VarDateFromCy 94:VarDateFromStr 95:VarDateFromDisp 96:VarDateFromBool "
    "97:VarFormatDateTime 98:VarCyFromUI1 99:VarCyFromI2 100:VarCyFromI4 101:VarCyFromR4 "
    "102:VarCyFromR8 103:VarCyFromDate 104:VarCyFromStr 105:VarCyFromDisp 106:VarCyFromBool "
    "107:VarFormatNumber 108:VarBstrFromUI1 109:VarBstrFromI2 110:VarBstrFromI4 "
    "111:VarBstrFromR4 112:VarBstrFromR8 113:VarBstrFromCy 114:VarBstrFromDate "
    "115:VarBstrFromDisp 116:VarBstrFromBool 117:VarFormatPercent 118:VarBoolFromUI1 "
    "119:VarBoolFromI2 120:VarBoolFromI4 121:VarBoolFromR4 122:VarBoolFromR8 "
    "123:VarBoolFromDate 124:VarBoolFromCy 125:VarBoolFromStr 126:VarBoolFromDisp "
    "127:VarFormatCurrency 128:VarWeekdayName 129:VarMonthName 130:VarUI1FromI2 "
    "131:VarUI1FromI4 132:VarUI1FromR4 133:VarUI1FromR8 134:VarUI1FromCy 135:VarUI1FromDate "
    "136:VarUI1FromStr 137:VarUI1FromDisp 138:VarUI1FromBool 139:VarFormatFromTokens "
    "140:VarTokenizeFormatString 141:VarAdd 142:VarAnd 143:VarDiv 144:DllCanUnloadNow "
    "145:DllGetClassObject 146:DispCallFunc 147:VariantChangeTypeEx 148:SafeArrayPtrOfIndex "
    "149:SysStringByteLen 150:SysAllocStringByteLen 151:DllRegisterServer 152:VarEqv "
    "153:VarIdiv 154:VarImp 155:VarMod 156:VarMul 157:VarOr 158:VarPow 159:VarSub "
    "160:CreateTypeLib 161:LoadTypeLib 162:LoadRegTypeLib 163:RegisterTypeLib "
    "164:QueryPathOfRegTypeLib 165:LHashValOfNameSys 166:LHashValOfNameSysA 167:VarXor "
    "168:VarAbs 169:VarFix 170:OaBuildVersion 171:ClearCustData 172:VarInt 173:VarNeg "
    "174:VarNot 175:VarRound 176:VarCmp 177:VarDecAdd 178:VarDecDiv 179:VarDecMul "
    "180:CreateTypeLib2 181:VarDecSub 182:VarDecAbs 183:LoadTypeLibEx "
    "184:SystemTimeToVariantTime 185:VariantTimeToSystemTime 186:UnRegisterTypeLib "
    "187:VarDecFix 188:VarDecInt 189:VarDecNeg 190:VarDecFromUI1 191:VarDecFromI2 "
    "192:VarDecFromI4 193:VarDecFromR4 194:VarDecFromR8 195:VarDecFromDate 196:VarDecFromCy "
    "197:VarDecFromStr 198:VarDecFromDisp 199:VarDecFromBool 200:GetErrorInfo 201:SetErrorInfo "
    "202:CreateErrorInfo 203:VarDecRound 204:VarDecCmp 205:VarI2FromI1 206:VarI2FromUI2 "
    "207:VarI2FromUI4 208:VarI2FromDec 209:VarI4FromI1 210:VarI4FromUI2 211:VarI4FromUI4 "
    "212:VarI4FromDec 213:VarR4FromI1 214:VarR4FromUI2 215:VarR4FromUI4 216:VarR4FromDec "
    "217:VarR8FromI1 218:VarR8FromUI2 219:VarR8FromUI4 220:VarR8FromDec 221:VarDateFromI1 "
    "222:VarDateFromUI2 223:VarDateFromUI4 224:VarDateFromDec 225:VarCyFromI1 226:VarCyFromUI2 "
    "227:VarCyFromUI4 228:VarCyFromDec 229:VarBstrFromI1 230:VarBstrFromUI2 231:VarBstrFromUI4 "
    "232:VarBstrFromDec 233:VarBoolFromI1 234:VarBoolFromUI2 235:VarBoolFromUI4 "
    "236:VarBoolFromDec 237:VarUI1FromI1 238:VarUI1FromUI2 239:VarUI1FromUI4 240:VarUI1FromDec "
    "241:VarDecFromI1 242:VarDecFromUI2 243:VarDecFromUI4 244:VarI1FromUI1 245:VarI1FromI2 "
    "246:VarI1FromI4 247:VarI1FromR4 248:VarI1FromR8 249:VarI1FromDate 250:VarI1FromCy "
    "251:VarI1FromStr 252:VarI1FromDisp 253:VarI1FromBool 254:VarI1FromUI2 255:VarI1FromUI4 "
    "256:VarI1FromDec 257:VarUI2FromUI1 258:VarUI2FromI2 259:VarUI2FromI4 260:VarUI2FromR4 "
    "261:VarUI2FromR8 262:VarUI2FromDate 263:VarUI2FromCy 264:VarUI2FromStr 265:VarUI2FromDisp "
    "266:VarUI2FromBool 267:VarUI2FromI1 268:VarUI2FromUI4 269:VarUI2FromDec 270:VarUI4FromUI1 "
    "271:VarUI4FromI2 272:VarUI4FromI4 273:VarUI4FromR4 274:VarUI4FromR8 275:VarUI4FromDate "
    "276:VarUI4FromCy 277:VarUI4FromStr 278:VarUI4FromDisp 279:VarUI4FromBool 280:VarUI4FromI1 "
    "281:VarUI4FromUI2 282:VarUI4FromDec 283:BSTR_UserSize 284:BSTR_UserMarshal "
    "285:BSTR_UserUnmarshal 286:BSTR_UserFree 287:VARIANT_UserSize 288:VARIANT_UserMarshal "
    "289:VARIANT_UserUnmarshal 290:VARIANT_UserFree 291:LPSAFEARRAY_UserSize "
    "292:LPSAFEARRAY_UserMarshal 293:LPSAFEARRAY_UserUnmarshal 294:LPSAFEARRAY_UserFree "
    "295:LPSAFEARRAY_Size 296:LPSAFEARRAY_Marshal 297:LPSAFEARRAY_Unmarshal 298:VarDecCmpR8 "
    "299:VarCyAdd 300:DllUnregisterServer 301:OACreateTypeLib2 303:VarCyMul 304:VarCyMulI4 "
    "305:VarCySub 306:VarCyAbs 307:VarCyFix 308:VarCyInt 309:VarCyNeg 310:VarCyRound "
    "311:VarCyCmp 312:VarCyCmpR8 313:VarBstrCat 314:VarBstrCmp 315:VarR8Pow 316:VarR4CmpR8 "
    "317:VarR8Round 318:VarCat 319:VarDateFromUdateEx 322:GetRecordInfoFromGuids "
    "323:GetRecordInfoFromTypeInfo 325:SetVarConversionLocaleSetting "
    "326:GetVarConversionLocaleSetting 327:SetOaNoCache 329:VarCyMulI8 330:VarDateFromUdate "
    "331:VarUdateFromDate 332:GetAltMonthNames 333:VarI8FromUI1 334:VarI8FromI2 335:VarI8FromR4 "
    "336:VarI8FromR8 337:VarI8FromCy 338:VarI8FromDate 339:VarI8FromStr 340:VarI8FromDisp "
    "341:VarI8FromBool 342:VarI8FromI1 343:VarI8FromUI2 344:VarI8FromUI4 345:VarI8FromDec "
    "346:VarI2FromI8 347:VarI2FromUI8 348:VarI4FromI8 349:VarI4FromUI8 360:VarR4FromI8 "
    "361:VarR4FromUI8 362:VarR8FromI8 363:VarR8FromUI8 364:VarDateFromI8 365:VarDateFromUI8 "
    "366:VarCyFromI8 367:VarCyFromUI8 368:VarBstrFromI8 369:VarBstrFromUI8 370:VarBoolFromI8 "
    "371:VarBoolFromUI8 372:VarUI1FromI8 373:VarUI1FromUI8 374:VarDecFromI8 375:VarDecFromUI8 "
    "376:VarI1FromI8 377:VarI1FromUI8 378:VarUI2FromI8 379:VarUI2FromUI8 401:OleLoadPictureEx "
    "402:OleLoadPictureFileEx 411:SafeArrayCreateVector 412:SafeArrayCopyData "
    "413:VectorFromBstr 414:BstrFromVector 415:OleIconToCursor "
    "416:OleCreatePropertyFrameIndirect 417:OleCreatePropertyFrame 418:OleLoadPicture "
    "419:OleCreatePictureIndirect 420:OleCreateFontIndirect 421:OleTranslateColor "
    "422:OleLoadPictureFile 423:OleSavePictureFile 424:OleLoadPicturePath 425:VarUI4FromI8 "
    "426:VarUI4FromUI8 427:VarI8FromUI8 428:VarUI8FromI8 429:VarUI8FromUI1 430:VarUI8FromI2 "
    "431:VarUI8FromR4 432:VarUI8FromR8 433:VarUI8FromCy 434:VarUI8FromDate 435:VarUI8FromStr "
    "436:VarUI8FromDisp 437:VarUI8FromBool 438:VarUI8FromI1 439:VarUI8FromUI2 440:VarUI8FromUI4 "
    "441:VarUI8FromDec 442:RegisterTypeLibForUser 443:UnRegisterTypeLibForUser"
)

_IMPORT_NAME = re.compile(rb"[0-9A-Za-z_.]*")


def _ordinal_name(dll: bytes, ordinal: int) -> bytes:
    lowered = dll.lower()
    table: dict[int, str] = {}
    if lowered.startswith((b"ws2_32.dll", b"wsock32.dll")):
        table = _WS2_32_ORDINALS
    elif lowered.startswith(b"oleaut32.dll"):
        table = _OLEAUT32_ORDINALS
    return table.get(ordinal, f"ord{ordinal}").encode("ascii")


def _dll_stem(dll: bytes) -> bytes:
    """The DLL name as it enters the import string: only the *first* dot is considered."""
    dot = dll.find(b".")
    if dot >= 0 and dll[dot : dot + 4].lower() in (b".ocx", b".sys", b".dll"):
        return dll[:dot]
    return dll


def _pe_imports(view: memoryview, headers: _PeHeaders, rvas: _RvaMap) -> bytes | None:
    """libclamav's normalised import string (``dll.func`` lower-cased, comma-joined).

    None where libclamav computes no import hash: no import directory, or a table it rejects
    (unmappable name or thunk RVA, a function name outside ``[0-9A-Za-z_.]``).
    """
    size = len(view)
    table_rva, table_size = headers.directories[1]
    if not table_rva or not table_size:
        return None
    at = rvas.offset(table_rva)
    if at is None or at + table_size > size:
        return None
    entries: list[bytes] = []
    length = 0
    thunks = 0
    left = table_size
    descriptors = 0
    while left > _PE_IMPORT.size and descriptors < 1024:
        original_thunk, _, _, name_rva, first_thunk = _PE_IMPORT.unpack_from(view, at)
        if not name_rva:
            break
        left -= _PE_IMPORT.size
        at += _PE_IMPORT.size
        descriptors += 1
        name_at = rvas.offset(name_rva)
        if name_at is None or name_at >= size:
            return None
        dll = _cstring(view, name_at, min(256, size - name_at))
        thunk_at = rvas.offset(original_thunk) if original_thunk else None
        if not thunk_at:
            thunk_at = rvas.offset(first_thunk)
            if thunk_at is None:
                return None
        prefix: bytes | None = None
        while _fits(size, thunk_at, 4):
            (thunk,) = _LE32.unpack_from(view, thunk_at)
            if not thunk:
                break
            thunk_at += 4
            thunks += 1
            if thunks > _MAX_THUNKS:
                return None
            if thunk & 0x8000_0000:
                function = _ordinal_name(dll, thunk & 0xFFFF)
            else:
                # libclamav tests the wrong error flag here, so an unmappable RVA reads the
                # name at file offset 0 (+2 for the hint), usually failing the validation.
                hint = rvas.offset(thunk) or 0
                span = min(256, size - hint) if hint <= size else 256
                if not _fits(size, hint + 2, span):
                    continue  # also drops names within 258 bytes of EOF, as libclamav does
                function = _cstring(view, hint + 2, span)
            if not _IMPORT_NAME.fullmatch(function):
                return None
            if prefix is None:
                prefix = _dll_stem(dll).lower() + b"."
            entry = prefix + function.lower()
            length += len(entry) + (1 if entries else 0)
            if length > _MAX_IMPORT_STRING:
                return None
            entries.append(entry)
    return b",".join(entries)


_VS_VERSION_INFO = "VS_VERSION_INFO\0".encode("utf-16-le")
_VAR_FILE_INFO = "VarFileInfo\0".encode("utf-16-le")
_STRING_FILE_INFO = "StringFileInfo\0".encode("utf-16-le")
_UTF16_NUL = re.compile(rb"(?:..)*?\x00\x00", re.DOTALL)
_RT_VERSION = 0x10


def _version_resources(view: memoryview, headers: _PeHeaders, rvas: _RvaMap) -> list[int]:
    """RVAs of up to 16 RT_VERSION data entries, walked as libclamav's findres does."""
    size = len(view)
    base = headers.directories[2][0]
    found: list[int] = []
    budget = _MAX_RESOURCE_ENTRIES

    def directory(rva: int) -> tuple[int, int, int] | None:
        at = rvas.offset(rva & _M32)
        if at is None or not _fits(size, at, 16):
            return None
        named, numbered = struct.unpack_from("<HH", view, at + 12)
        return at + 16, named, numbered

    root = directory(base)
    if root is None:
        return found
    entry, named, numbered = root
    entry += 8 * named
    for _ in range(numbered):
        budget -= 1
        if budget < 0 or not _fits(size, entry, 8):
            return found
        type_id, type_offset = struct.unpack_from("<II", view, entry)
        entry += 8
        if type_id != _RT_VERSION or not type_offset >> 31:
            continue
        names = directory(base + (type_offset & 0x7FFF_FFFF))
        if names is None:
            return found
        name_entry, named, numbered = names
        for _ in range((named + numbered) & 0xFFFF):
            budget -= 1
            if budget < 0 or not _fits(size, name_entry, 8):
                return found
            (name_offset,) = _LE32.unpack_from(view, name_entry + 4)
            name_entry += 8
            if not name_offset >> 31:
                continue
            langs = directory(base + (name_offset & 0x7FFF_FFFF))
            if langs is None:
                return found
            lang_entry, named, numbered = langs
            for _ in range((named + numbered) & 0xFFFF):
                budget -= 1
                if budget < 0 or not _fits(size, lang_entry, 8):
                    return found
                (lang_offset,) = _LE32.unpack_from(view, lang_entry + 4)
                lang_entry += 8
                if not lang_offset >> 31:
                    found.append((base + lang_offset) & _M32)
                    if len(found) == 16:
                        return found
        return found  # only the first RT_VERSION type entry is visited
    return found


def _version_strings(view: memoryview, at: int, size: int, keys: dict[int, None]) -> None:
    """Record where each String's key starts inside one VS_VERSIONINFO block.

    Mirrors libclamav's walk: one VS_VERSIONINFO, an optional leading VarFileInfo, the first
    StringFileInfo, all its StringTables; strings with an empty value are skipped.
    """
    if size <= 4:
        return
    (word,) = _LE32.unpack_from(view, at)
    block, value_length = word & 0xFFFF, word >> 16
    if (
        block > size
        or block <= 92
        or value_length != 0x34
        or bytes(view[at + 6 : at + 38]) != _VS_VERSION_INFO
        or _LE32.unpack_from(view, at + 0x28)[0] != 0xFEEF04BD
    ):
        return
    at += 92
    block -= 92
    seen_var = False
    while block > 6:
        child = _LE16.unpack_from(view, at)[0]
        if child > block:
            return
        if not seen_var and child > 30 and bytes(view[at + 6 : at + 30]) == _VAR_FILE_INFO:
            at += child
            block -= child
            seen_var = True
            continue
        if child <= 36 or bytes(view[at + 6 : at + 36]) != _STRING_FILE_INFO:
            return
        at += 36
        child -= 36
        while child > 6:
            table = _LE16.unpack_from(view, at)[0]
            next_at, next_child = at + table, child - table
            if table > child or table <= 24:
                break
            at += 24
            table -= 24
            while table > 6:
                record = (_LE16.unpack_from(view, at)[0] + 3) & ~3
                if record > table or record <= 16:
                    table = child = 0
                    break
                match = _UTF16_NUL.match(view, at + 6, at + record)
                key_end = (match.end() - at if match else record) + 3 & ~3
                if key_end < record and record - key_end > 2:
                    keys[(at + 6) & _M32] = None
                at += record
                table -= record
            at = next_at
            child = next_child if child else 0
        return


def _version_info(view: memoryview, headers: _PeHeaders, rvas: _RvaMap) -> tuple[int, ...]:
    """File offsets of the VersionInfo String keys, the positions ``VI`` signatures test."""
    if not headers.directories[2][1]:
        return ()
    size = len(view)
    keys: dict[int, None] = {}
    for rva in _version_resources(view, headers, rvas):
        entry = rvas.offset(rva)
        if entry is None or not _fits(size, entry, 16):
            continue
        data_rva, data_size = struct.unpack_from("<II", view, entry)
        at = rvas.offset(data_rva)
        if at is None or not _fits(size, at, data_size):
            continue
        try:
            _version_strings(view, at, data_size, keys)
        except struct.error:  # unreachable while sizes nest; kept as a guard
            continue
    return tuple(keys)


def _import_digest(imports: bytes | None) -> tuple[str, int] | None:
    if imports is None:
        return None
    return hashlib.md5(imports, usedforsecurity=False).hexdigest(), len(imports)


def parse_pe(data: bytes | memoryview) -> ExeInfo | None:
    """Parse a PE the way libclamav does for offsets, section hashes and the import hash.

    libclamav parses twice: once for signature offsets (VersionInfo included, sections past
    EOF kept with raw size 0) and once at scan time for ``.mdb``/``.imp`` (such sections
    dropped). Both are reproduced; see ``ExeInfo.target_ok``.
    """
    view = _view(data)
    headers = _pe_headers(view)
    if headers is None:
        return None
    size = len(view)
    parsed: dict[bool, tuple[list[Section], _RvaMap, int]] = {}
    for remove_missing in (False, True):
        sections = _pe_sections(headers, size, remove_missing)
        if sections is None:
            continue
        rvas = _RvaMap(sections, headers.header_size, size)
        entry_point = rvas.offset(headers.entry_rva)
        if entry_point is not None:
            parsed[remove_missing] = (sections, rvas, entry_point)
    imports = None
    if True in parsed and not headers.pe64:  # no .imp scanning of PE32+ in libclamav
        imports = _pe_imports(view, headers, parsed[True][1])
    if False in parsed:
        sections, rvas, entry_point = parsed[False]
        version_info = _version_info(view, headers, rvas)
        target_ok = True
    elif True in parsed:
        sections, rvas, entry_point = parsed[True]
        version_info = ()
        target_ok = False
    else:
        return None
    return ExeInfo(
        kind="pe",
        entry_point=entry_point,
        sections=tuple(sections),
        pe64=headers.pe64,
        version_info=version_info,
        imphash=_import_digest(imports),
        imports=imports,
        target_ok=target_ok,
    )


# --------------------------------------------------------------------------------------------
# ELF


def parse_elf(data: bytes | memoryview) -> ExeInfo | None:
    """Parse an ELF as libclamav's cli_elfheader does.

    The entry point is mapped through the first program header (of any type) whose memory
    range holds it, and is 0 when there are no program headers or e_entry is 0. Section
    headers give the sections unchanged (virtual size 0); more than 256 fail the parse, and
    so does a wrong e_shentsize even when there are no sections.
    """
    view = _view(data)
    size = len(view)
    if size < 52 or bytes(view[:4]) != b"\x7fELF" or view[4] not in (1, 2):
        return None
    is64 = view[4] == 2
    order = "<" if view[5] == 1 else ">"
    if is64:
        if size < 64:
            return None
        entry, phoff, shoff = struct.unpack_from(order + "QQQ", view, 24)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", view, 54)
        ph_layout, ph_size, sh_layout, sh_size, mask = "8xQQ8x8xQ", 56, "16xQQQ", 64, _M64
    else:
        entry, phoff, shoff = struct.unpack_from(order + "III", view, 24)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", view, 42)
        ph_layout, ph_size, sh_layout, sh_size, mask = "4xII4x4xI", 32, "12xIII", 40, _M32
    if phnum > 128:
        return None
    entry_point = 0
    if phnum and entry:
        if phentsize != ph_size:
            return None
        program: list[tuple[int, int, int]] = []
        for index in range(phnum):
            at = (phoff + index * ph_size) & mask
            if not _fits(size, at, ph_size):
                return None
            program.append(struct.unpack_from(order + ph_layout, view, at))
        for p_offset, p_vaddr, p_memsz in program:
            if p_vaddr <= entry < (p_vaddr + p_memsz) & mask:
                entry_point = ((entry - p_vaddr + p_offset) & mask) & _M32
                break
        else:
            return None
    if shnum > 256 or shentsize != sh_size:
        return None
    sections = []
    for index in range(shnum):
        at = (shoff + index * sh_size) & mask
        if not _fits(size, at, sh_size):
            return None
        address, offset, length = struct.unpack_from(order + sh_layout, view, at)
        sections.append(Section(offset & _M32, length & _M32, address & _M32, 0))
    return ExeInfo(kind="elf", entry_point=entry_point, sections=tuple(sections))


# --------------------------------------------------------------------------------------------
# Mach-O

_MACHO_MAGIC = {
    0xFEEDFACE: ("<", False),
    0xCEFAEDFE: (">", False),
    0xFEEDFACF: ("<", True),
    0xCFFAEDFE: (">", True),
}
# CPU types whose LC_THREAD/LC_UNIXTHREAD libclamav reads: (state size, PC width in bytes).
# It reads the i386 state without taking the PC from it, hence no entry for x86 below.
_MACHO_THREAD_STATES = {7: (64, 0), 18: (160, 4), 18 | 0x0100_0000: (312, 8)}


def parse_macho(data: bytes | memoryview) -> ExeInfo | None:
    """Parse a thin Mach-O as libclamav's cli_machoheader does.

    Only PowerPC thread states yield an entry point; for x86, x86-64 and ARM it stays 0, so
    ``EP+n`` means file offset n and ``EntryPoint:0-0`` holds (observed on 1.4.6). LC_MAIN is
    ignored. Segments are read back to back, ignoring their cmdsize.
    """
    view = _view(data)
    size = len(view)
    if size < 28:
        return None
    (magic,) = _LE32.unpack_from(view, 0)
    if magic not in _MACHO_MAGIC:
        return None
    order, is64 = _MACHO_MAGIC[magic]
    cpu, _, _, ncmds = struct.unpack_from(order + "IIII", view, 4)
    if not ncmds or ncmds > 1024:
        return None
    thread_state = _MACHO_THREAD_STATES.get(cpu)
    if is64:
        segment_cmd, nsects_at, section_size = 0x19, 56, 80
        section_layout = "32xQQII"
    else:
        segment_cmd, nsects_at, section_size = 0x01, 40, 68
        section_layout = "32xIIII"
    segment_size = nsects_at + 8
    at = 32 if is64 else 28
    sections: list[Section] = []
    entry = 0
    for _ in range(ncmds):
        if not _fits(size, at, 8):
            return None
        cmd, cmdsize = struct.unpack_from(order + "II", view, at)
        at += 8
        if cmd == segment_cmd:
            if not _fits(size, at, segment_size):
                return None
            (nsects,) = struct.unpack_from(order + "I", view, at + nsects_at)
            at += segment_size
            if nsects > 255:
                return None
            for _ in range(nsects):
                if not _fits(size, at, section_size):
                    return None
                address, length, offset, align = struct.unpack_from(
                    order + section_layout, view, at
                )
                at += section_size
                if not is64 and align >= 32:
                    return None
                alignment = 1 << (align & 31)  # what x86's shift does with a count >= 32
                vsz = length & _M32
                rsz = (vsz + (alignment - vsz % alignment) % alignment) & _M32
                sections.append(Section(offset, rsz, address & _M32, vsz))
        elif thread_state is not None and cmd in (4, 5):
            state_size, pc_width = thread_state
            at += 8
            if not _fits(size, at, state_size):
                return None
            if pc_width == 4:
                (entry,) = struct.unpack_from(order + "I", view, at)
            elif pc_width == 8:
                entry = struct.unpack_from(order + "Q", view, at)[0] & _M32
            at += state_size
        elif cmdsize > 8:
            at += cmdsize - 8
    if entry and sections:
        for section in sections:
            if (
                section.virtual_address
                <= entry
                < (section.virtual_address + section.virtual_size) & _M32
            ):
                entry = (entry - section.virtual_address + section.raw_offset) & _M32
                break
        else:
            return None
    return ExeInfo(kind="macho", entry_point=entry, sections=tuple(sections))


def macho_fat_members(data: bytes | memoryview) -> list[tuple[int, int]]:
    """(offset, length) of the members of a universal binary that libclamav scans.

    libclamav scans each member as a child object (typed and parsed on its own); lengths are
    clipped to the file, members of 5 bytes or fewer and offsets past EOF are skipped, and
    the walk stops at the first entry pointing back into the header. ``nfat_arch`` of 39 or
    more means a Java class file (same magic), above 32 a broken header: no members.
    """
    view = _view(data)
    size = len(view)
    if size < 8:
        return []
    magic = bytes(view[:4])
    if magic == b"\xca\xfe\xba\xbe":
        order = ">"
    elif magic == b"\xbe\xba\xfe\xca":
        order = "<"
    else:
        return []
    (count,) = struct.unpack_from(order + "I", view, 4)
    if (count & 0xFFFF) >= 39 or count > 32:
        return []
    members: list[tuple[int, int]] = []
    at = 8
    for _ in range(count):
        if not _fits(size, at, 20):
            break
        _, _, offset, length, _ = struct.unpack_from(order + "IIIII", view, at)
        at += 20
        if offset < at:
            break
        if offset >= size:
            continue
        if not length or length > size - offset:
            length = size - offset
        if length > 5:
            members.append((offset, length))
    return members
