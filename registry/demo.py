"""Demo registrants for `make run` and training: buyers, miners and their REINFO registrations.

Every phone number here is in the +51 987 000 0xx range, reserved for the demo.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from recpo.clock import lima_date
from registry.identifiers import DocumentType, natural_person_ruc
from registry.models import (
    Language,
    PhoneLink,
    PhoneLinkState,
    Registrant,
    ReinfoRegistration,
    ReinfoStatus,
    Role,
)

# (role, document type, number, name, language, phone, RECPO number)
REGISTRANTS = (
    (
        Role.PLANT,
        DocumentType.RUC,
        "20131312955",
        "Planta de Beneficio Oro Sur S.A.C.",
        "es",
        "+51987000001",
        "RECPO-0001",
    ),
    (
        Role.STOCKPILER,
        DocumentType.RUC,
        "20100079501",
        "Acopio Huepetuhe E.I.R.L.",
        "es",
        "+51987000002",
        "RECPO-0002",
    ),
    (Role.MINER, DocumentType.DNI, "45678912", "Juana Quispe Mamani", "qu", "+51987000011", None),
    (Role.MINER, DocumentType.DNI, "41234567", "Pedro Huamán Condori", "es", "+51987000012", None),
    (Role.MINER, DocumentType.DNI, "40000001", "Rosa Ccori Apaza", "es", "+51987000013", None),
)

# (DNI of the holder, código único, mining right, department, province, district, ubigeo, status)
REINFO = (
    (
        "45678912",
        "010149108",
        "Rinconada Uno",
        "PUNO",
        "SAN ANTONIO DE PUTINA",
        "ANANEA",
        "211002",
        ReinfoStatus.VIGENTE,
    ),
    (
        "41234567",
        "070012317",
        "Huepetuhe Dos",
        "MADRE DE DIOS",
        "MANU",
        "HUEPETUHE",
        "170204",
        ReinfoStatus.VIGENTE,
    ),
    (
        "41234567",
        "070012318",
        "Huepetuhe Tres",
        "MADRE DE DIOS",
        "MANU",
        "HUEPETUHE",
        "170204",
        ReinfoStatus.EXCLUIDO,
    ),
    (
        "40000001",
        "040155607",
        "Chala Norte",
        "AREQUIPA",
        "CARAVELI",
        "CHALA",
        "040307",
        ReinfoStatus.SUSPENDIDO,
    ),
)


def seed_demo(session: Session, now: dt.datetime) -> int:
    """Add the demo registrants and REINFO rows that are missing; return how many were new."""
    created = 0
    names = {doc: name for _, _, doc, name, *_ in REGISTRANTS}
    for role, doc_type, number, name, language, phone, recpo_number in REGISTRANTS:
        exists = session.scalar(
            sa.select(Registrant.id).where(
                Registrant.document_type == doc_type, Registrant.document_number == number
            )
        )
        if exists is not None:
            continue
        registrant = Registrant(
            role=role,
            document_type=doc_type,
            document_number=number,
            name=name,
            language=Language(language),
            recpo_number=recpo_number,
            created_at=now,
            updated_at=now,
        )
        session.add(registrant)
        if (
            session.scalar(
                sa.select(PhoneLink.id).where(
                    PhoneLink.phone == phone, PhoneLink.state == PhoneLinkState.ACTIVE
                )
            )
            is None
        ):
            session.add(
                PhoneLink(
                    registrant=registrant,
                    phone=phone,
                    state=PhoneLinkState.ACTIVE,
                    requested_at=now,
                    decided_by="demo",
                    decided_at=now,
                )
            )
        created += 1
    for dni, codigo, right, department, province, district, ubigeo, status in REINFO:
        ruc = natural_person_ruc(dni)
        exists = session.scalar(
            sa.select(ReinfoRegistration.id).where(
                ReinfoRegistration.ruc == ruc, ReinfoRegistration.codigo_unico == codigo
            )
        )
        if exists is None:
            session.add(
                ReinfoRegistration(
                    ruc=ruc,
                    codigo_unico=codigo,
                    holder_name=names[dni].upper(),
                    mining_right=right,
                    department=department,
                    province=province,
                    district=district,
                    ubigeo=ubigeo,
                    status=status,
                    snapshot_date=lima_date(now),
                    updated_at=now,
                )
            )
    session.flush()
    return created
